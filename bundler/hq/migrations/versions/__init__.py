"""Schema versions of the ledger, each an Alembic revision (``alembic upgrade head`` order).

* ``0001_ledger``  the first schema: devices, reports, inventories, builds, signatures,
                   rollouts, rollout_devices, carried, audit, audit_head

A schema change is a new module here whose ``down_revision`` is the newest one's,
and ``bundler.hq.ledger_db.HEAD`` moved to it (a test checks the two agree and that
the migrations make exactly ``ledger_schema``). ``alembic revision --autogenerate``
drafts one when alembic's ``script.py.mako`` is copied beside ``env.py`` for the run.

Example::

    from bundler.hq.ledger_db import upgrade
    upgrade(engine)        # runs every revision after the database's own
"""
