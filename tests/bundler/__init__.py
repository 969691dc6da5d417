"""Tests of bundler/, the host side (airlock)."""
