"""Alembic's entry for the ledger: run the migrations on the connection ``ledger_db`` hands in.

There is no ``alembic.ini`` and no URL here: ``bundler.hq.ledger_db.upgrade``
builds the Alembic config in code and passes its open connection as
``config.attributes["connection"]``, so the migrations run inside the same
transaction and lock as everything else::

    upgrade(engine)        # bundler.hq.ledger_db
"""

from __future__ import annotations

from alembic import context

from bundler.hq.ledger_schema import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
