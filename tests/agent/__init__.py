"""Tests of agent/, the device side (airlock-agent)."""
