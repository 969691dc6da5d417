"""Airlock's device side: ``airlock-agent``.

Installs a bundle in one streaming pass (verify, store, health-check, switch),
rolls back by itself when a check or probe fails, and survives kill -9 at any
instant. Start with docs/AGENT.md; the modules are named for what they do:
layout (the one place that knows ROOT), store, journal, lock, install, health,
switch, activation, rollback, recovery, gc, fsck, status, sinks/.

    from agent.install import install
"""
