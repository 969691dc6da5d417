"""A real, throwaway PostgreSQL cluster for the ledger tests: initdb in a temp dir, a private socket.

    with postgres_cluster() as url:        # skips (or, under CI=true, fails) without postgresql
        Ledger(url).status()               # postgresql+psycopg://postgres@/airlock?host=…

Debian's ``initdb`` and ``postgres`` refuse to run as root, so as root they
run as the unprivileged ``postgres`` user (``runuser -u postgres``) in a
temp dir it owns; otherwise as the current user. The server listens on no
TCP port at all, only on a unix socket in that dir (a random port number
names the socket), with trust authentication: nothing outside the temp dir
can reach it, and it is stopped (``pg_ctl stop -m fast``) and the dir
removed when the block ends, even on failure.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["pg_bin", "postgres_cluster"]


def pg_bin() -> Path | None:
    """Debian's versioned PostgreSQL binaries (``/usr/lib/postgresql/N/bin``), newest first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


def _need() -> Path:
    bin_dir = pg_bin()
    if bin_dir is not None:
        return bin_dir
    why = "postgresql not installed (apt-get install postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


@contextmanager
def postgres_cluster(fsync: bool = False) -> Iterator[str]:
    """A running cluster's URL; ``fsync`` on for figures that must count the disk."""
    bin_dir = _need()
    as_root = os.getuid() == 0
    base = Path(tempfile.mkdtemp(prefix="airlock-pg-"))
    data, log = base / "data", base / "server.log"
    port = random.randint(20000, 59000)
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []

    def pg(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120,
                              cwd=base)

    try:
        p = pg(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
               "--no-sync", "-E", "UTF8", "--locale=C")
        assert p.returncode == 0, p.stderr
        opts = f"-k {base} -p {port} -c listen_addresses=''" + ("" if fsync else " -c fsync=off")
        p = pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w",
               "start")
        assert p.returncode == 0, p.stderr + (log.read_text() if log.exists() else "")
        try:
            p = pg(str(bin_dir / "createdb"), "-h", str(base), "-p", str(port), "-U",
                   "postgres", "airlock")
            assert p.returncode == 0, p.stderr
            yield f"postgresql://postgres@/airlock?host={base}&port={port}"
        finally:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
