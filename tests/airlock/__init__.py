"""Tests of the shared ground package, ``airlock/``, module by module."""
