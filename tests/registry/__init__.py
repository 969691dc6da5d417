"""Integration tests against a real registry on loopback: pull, build, sinks, auth."""
