"""The test suite; shared plumbing in tests/support, fixtures in the conftest.py files."""
