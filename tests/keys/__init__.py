"""Tests of keys/: key files, trust roots, release metadata."""
