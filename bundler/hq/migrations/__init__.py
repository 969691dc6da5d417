"""The ledger's Alembic migrations, shipped in the package and run by ``ledger_db.open_ledger``.

* ``env``        Alembic's entry: runs the versions on the connection it is handed
* ``versions/``  one module per schema change, oldest first (``0001_ledger``: the tables)

Example::

    from bundler.hq.ledger_db import open_ledger
    engine = open_ledger("sqlite:///airlock-fleet/ledger.sqlite")   # upgraded to head
"""
