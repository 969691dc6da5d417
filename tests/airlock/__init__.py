"""Tests of airlock/, the ground both sides stand on, module by module."""
