"""Schema versions of the ledger, each an Alembic revision (``alembic upgrade head`` order).

* ``0001_ledger``  the first schema: devices, reports, inventories, builds, signatures,
                   rollouts, rollout_devices, carried, audit, audit_head

Example::

    from bundler.hq.ledger_db import upgrade
    upgrade(engine)        # runs every revision after the database's own
"""
