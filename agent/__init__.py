"""Airlock's device side: ``airlock-agent``.

Installs a bundle in one streaming pass (verify, store, health-check, switch),
rolls back by itself when a check or probe fails, and survives kill -9 at any
instant. Start with docs/AGENT.md; the modules are named for what they do:
layout (the one place that knows ROOT), store, journal, lock, install, health,
switch, activation, rollback, recovery, gc, fsck, status, sinks/. ``cli`` is
the command line, one module per command in ``commands/``; every change to
ROOT, from a command or serve's drop folder, goes through ``operations`` (the
envelope, and "install, then update the agent").

    from agent.operations import install_run
"""
