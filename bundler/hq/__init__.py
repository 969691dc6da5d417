"""Headquarters: device reports coming home, the fleet table and the fleet page.

* ``ingest``      enrolled device keys, verified reports, the fleet table and its textfile
* ``report_shape`` a report's fields read into one typed, bounded object before use
* ``fleet_page``  one self-contained HTML fleet report with plots over time
* ``ledger``      the fleet ledger: enrol and ingest into one database, records written
* ``ledger_db``   opening the ledger: URL to engine, migrations to head, writers serialised
* ``ledger_schema`` the ledger's tables (one schema for SQLite and PostgreSQL)
* ``ledger_audit`` the append-only, hash-chained audit log and its check
* ``ledger_queries`` status, history, the fleet table and the audit log, read back
* ``ledger_records`` builds, signatures, rollouts and carried bundles written in
* ``ledger_import`` a fleet directory moved into the ledger
* ``migrations/`` the Alembic migrations shipped with the package, run on open
* ``sample_packs`` devices' signed sample packs checked whole and stored

Example::

    from bundler.hq.ingest import FleetRecords
    from bundler.hq.ledger import Ledger
"""
