"""What several ``airlock`` commands take: key unlocking, the spec and registry options, subcommands.

    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_key_args(p)                       # --passphrase-env, --pin-env, --strict
    signers = [signer_for(k, secrets_from(a), a) for k in a.key]

    add = subcommands(p, "fleet_cmd")         # a command group: each subcommand as a command
    push = add("push", "copy a bundle to devices", "airlock fleet push ...")

Only what two or more command modules share lives here; a command's own
options stay in its module.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from securesystemslib.signer import Signer

from airlock.console import Parser, add_command, say, tool_parser
from airlock.errors import AirlockError, UsageError
from keys.keyfile import passphrase_from_env
from keys.signers import Secrets, open_signer
from keys.trust import TrustRoot

if TYPE_CHECKING:
    from bundler.hq.ledger import Ledger

__all__ = ["Subcommand", "add_key_args", "is_trust_root", "ledger_args", "ledger_from",
           "record_args", "record_in_ledger", "registry_args", "registry_options",
           "secrets_from", "signer_for", "spec_args", "subcommands", "warn"]

#: Adds one subcommand of a group: name, summary, example(s), longer description.
Subcommand = Callable[..., argparse.ArgumentParser]


def subcommands(p: argparse.ArgumentParser, dest: str, *, required: bool = True,
                metavar: str | None = None,
                parents: Sequence[argparse.ArgumentParser] | None = None) -> Subcommand:
    """The subcommands of a command group, each with ``airlock``'s common options (``-q`` ...)."""
    sub = p.add_subparsers(dest=dest, metavar=metavar, required=required, parser_class=Parser)
    shared: list[argparse.ArgumentParser] = (list(parents) if parents is not None
                                             else [common_parent()])

    def add(name: str, summary: str, example: str | Sequence[str],
            description: str | None = None) -> argparse.ArgumentParser:
        return add_command(sub, name, summary, example, shared, description)

    return add


def common_parent() -> Parser:
    """The parent every ``airlock`` command takes ``--debug``, ``-q``, ``-v``, ``--no-progress`` from."""
    return tool_parser("airlock", "", ())[1]


def add_key_args(p: argparse.ArgumentParser) -> None:
    """How to unlock keys: a key file's passphrase, a token's PIN, the key-file mode rule."""
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key files is in $VAR")
    p.add_argument("--pin-env", metavar="VAR",
                   help="PIN of an HSM key (hsm:) is in $VAR (default: asked on a terminal)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a private key file that group or others can access (default: warn)")


def warn(message: str) -> None:
    say("airlock", "warning", message)


def secrets_from(a: argparse.Namespace) -> Secrets:
    """The secrets a command's keys may ask for, from its flags (or a prompt on a terminal)."""
    var = getattr(a, "pin_env", None)

    def pin() -> str:
        if var is not None:
            value = os.environ.get(var)
            if not value:
                raise UsageError(f"environment variable {var} holds no PIN")
            return value
        if not sys.stdin.isatty():
            raise UsageError("the HSM asks for its PIN: pass --pin-env VAR")
        return getpass.getpass("HSM PIN: ")

    return Secrets(passphrase_from_env(getattr(a, "passphrase_env", None)), pin)


def signer_for(spec: str, secrets: Secrets, a: argparse.Namespace) -> Signer:
    return open_signer(spec, secrets, strict=getattr(a, "strict", False), warn=warn)


def is_trust_root(path: Path) -> bool:
    """Whether ``path`` holds a trust root, signed or still collecting signatures."""
    from airlock.limits import MAX_METADATA_BYTES

    with path.open("rb") as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    try:
        TrustRoot.from_bytes(data, check_self_signed=False)
    except AirlockError:
        return False
    return True


def registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry-auth", type=Path, metavar="CONFIG.json",
                   help="docker config.json with registry credentials (default: "
                   "~/.docker/config.json)")
    p.add_argument("--insecure", action="append", default=[], metavar="HOST:PORT",
                   help="talk plain HTTP to this registry (repeatable)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="pull cache directory (default: ~/.cache/airlock)")


def spec_args(p: argparse.ArgumentParser) -> None:
    """The release spec and how it is checked: what ``check`` and ``build`` both take."""
    p.add_argument("spec", type=Path, metavar="SPEC",
                   help="the release spec, airlock.yaml (fields in docs/spec.md)")
    p.add_argument("--min-validity", default="1d", metavar="DURATION",
                   help="refuse a spec whose 'expires' is closer than this to the build time, "
                   "like 12h, 1d or 2w: the release must outlive its trip to the site")
    registry_args(p)
    p.add_argument("--enforce-budgets", action="store_true",
                   help="fail on the models' latency and memory budgets and on execution "
                   "providers this host lacks too (default: report them; this host is not the "
                   "device)")


def registry_options(a: argparse.Namespace) -> dict[str, object]:
    """The pull options ``registry_args`` collected, as the build takes them."""
    return {"auth": a.registry_auth, "insecure": a.insecure, "cache": a.cache}


def ledger_args(p: argparse.ArgumentParser) -> None:
    """``--fleet`` and ``--db``: where headquarters' ledger is (``bundler.hq.ledger_db``)."""
    p.add_argument("--fleet", type=Path,
                   help="fleet directory; the ledger is FLEET/ledger.sqlite unless --db is given "
                   "(default $AIRLOCK_FLEET, 'fleet' in airlock.toml, or ./airlock-fleet)")
    p.add_argument("--db", metavar="URL",
                   help="the ledger's database: sqlite:///FILE or postgresql://USER@HOST/DB "
                   "(default $AIRLOCK_DB, 'db' in airlock.toml, or SQLite in the fleet directory)")


def record_args(p: argparse.ArgumentParser) -> None:
    """``--record`` (opt-in) and where: build and sign write into the ledger only when asked."""
    p.add_argument("--record", action="store_true",
                   help="also record this in headquarters' ledger (--db, else FLEET/ledger.sqlite)")
    ledger_args(p)


def ledger_from(a: argparse.Namespace) -> Ledger:
    """The ledger ``--db``/``--fleet`` (after the host config filled them) name, opened."""
    from bundler.hq.ledger import Ledger
    from bundler.hq.ledger_db import ledger_url

    return Ledger(ledger_url(a.db, a.fleet))


def record_in_ledger(a: argparse.Namespace, what: str, write: Callable[[Ledger], object]) -> None:
    """``write`` into the ledger; one that cannot be written is a warning, never the result's
    failure (the bundle is built, the devices moved: that must not be reported as failed)."""
    from bundler.build.host_config import apply_to_args

    apply_to_args(a)
    try:
        write(ledger_from(a))
    except AirlockError as e:
        warn(f"{what} done but not recorded in the ledger: {e}")
