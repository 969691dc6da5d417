"""Opening the ledger: a database URL to an engine, upgraded to the newest schema, writes serialised.

    engine = open_ledger(ledger_url(None, Path("airlock-fleet")))   # SQLite in the fleet dir
    engine = open_ledger("postgresql://hq@db.example/airlock")        # or PostgreSQL

The default is one SQLite file, ``FLEET/ledger.sqlite``: embedded, nothing to
start. ``--db URL`` (or ``db`` in airlock.toml, or ``$AIRLOCK_DB``) names
another; ``postgresql://`` URLs are driven by psycopg 3. Opening runs the
Alembic migrations shipped in ``bundler/hq/migrations`` up to head, under the
same lock writers take, so two first opens do not both create the tables.

Writers are serialised so no write is lost and the audit chain stays one line:
on SQLite every transaction starts ``BEGIN IMMEDIATE`` (the write lock up
front, waiting up to ``_BUSY_MS`` for another writer) and on PostgreSQL every
writer locks the one row of ``audit_head`` (``ledger_audit.append``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from airlock.errors import PreconditionError, UsageError

__all__ = ["DEFAULT_FILE", "ledger_url", "open_ledger", "shown_url", "upgrade"]

DEFAULT_FILE = "ledger.sqlite"
#: The newest migration's revision: a ledger already there opens without importing Alembic
#: (about 0.2 s of every ``hq status``); tests/bundler/test_ledger.py checks it is the head.
HEAD = "0001"
_BUSY_MS = 60_000
_MIGRATIONS = Path(__file__).with_name("migrations")


def ledger_url(db: str | None, fleet: Path) -> str:
    """The database to use: ``--db`` when given, else SQLite in the fleet directory."""
    if db:
        return db
    return f"sqlite:///{(fleet / DEFAULT_FILE).absolute()}"


def shown_url(url: str) -> str:
    """``url`` with any password hidden, for messages and results."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<bad URL>"


def _sqlite_serialised(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # pysqlite's own BEGIN off: ours below takes the lock
        dbapi.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        dbapi.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_ledger(url: str) -> Engine:
    """An engine on ``url`` whose schema is at head; UsageError/PreconditionError in one line."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"--db {url!r} is not a database URL (sqlite:///FILE or "
                         "postgresql://USER@HOST/DB)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"--db {shown_url(url)}: the ledger runs on SQLite or PostgreSQL")
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ImportError) as e:
        raise UsageError(f"--db {shown_url(url)}: {e}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_serialised(engine)
    try:
        upgrade(engine)
    except OperationalError as e:
        raise PreconditionError(f"cannot open the ledger {shown_url(url)}: "
                                f"{str(e.orig).strip().splitlines()[0]}") from None
    return engine


def _at_head(engine: Engine, head: str) -> bool:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head


def alembic_config() -> Any:
    """Alembic's config for the migrations shipped in the package (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Run the shipped migrations up to head (a no-op, one query, when already there)."""
    if _at_head(engine, HEAD):
        return
    from alembic import command

    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two first opens at once: the second waits here, then finds the tables made.
            conn.execute(text("SELECT pg_advisory_xact_lock(2029)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
