"""``airlock agent-kit``: build the signed offline installer of the agent for one device platform.

    airlock agent-kit --platform linux/arm64 --python 3.11 --key keys/release.key

The work is ``bundler.build.agentkit.build_agent_kit``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from airlock.command import Reported
from airlock.console import human_size, json_option, phase_bars
from airlock.durations import parse_duration
from bundler.commands.options import add_key_args, secrets_from, signer_for
from keys.signers import key_files

__all__ = ["DESCRIPTION", "EXAMPLES", "KitBuilt", "add_arguments", "run"]

EXAMPLES = ("airlock agent-kit --platform linux/arm64 --python 3.11 --key keys/release.key",)
DESCRIPTION = None


@dataclass(frozen=True)
class KitBuilt(Reported):
    """The kit written (``KitResult.to_dict()``)."""

    def text(self) -> str:
        d = self.data
        return (f"built {d['kit']}: agent {d['version']} for {d['platform']} Python "
                f"{d['python']} (glibc {d['glibc']}+), {len(d['wheels'])} wheels, "
                f"{human_size(d['size'])}\nsha256 {d['sha256']}  (read it to the site to check "
                "the copy)" + ("\nlock updated" if d["lock_updated"] else ""))


def add_arguments(k: argparse.ArgumentParser) -> None:
    k.add_argument("--platform", default=None, metavar="linux/amd64|linux/arm64",
                   help="the device's platform (default: this machine's)")
    k.add_argument("--python", default=None, metavar="3.11",
                   help="the device's python3 version (default: this Python's)")
    k.add_argument("--glibc", default=None, metavar="2.28",
                   help="the oldest glibc the wheels may need (default 2.28)")
    k.add_argument("--extra", action="append", default=[], metavar="REQUIREMENT",
                   help="another package to carry and install beside the agent (repeatable)")
    k.add_argument("--key", action="append", required=True, metavar="KEY",
                   help="release key to sign kit.json with: a key file, a recorded .pub or a "
                   "URI (hsm:, envvar:, KMS); repeat to meet a threshold")
    add_key_args(k)
    k.add_argument("-o", "--output", type=Path, metavar="KIT",
                   help="kit path (default airlock-agent-kit-VERSION-PLATFORM-pyX.Y.tar)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing -o file that is not an agent kit")
    k.add_argument("--expires", default="365d", metavar="DURATION",
                   help="kit lifetime (default 365d)")
    k.add_argument("--project", type=Path, metavar="DIR",
                   help="airlock-edge source checkout (default: this one)")
    k.add_argument("--lock", type=Path, metavar="LOCK.json",
                   help="the lock of exact wheels (default PROJECT/packaging/agent-kit-lock.json)")
    k.add_argument("--update-lock", action="store_true",
                   help="resolve this target again against the index and record it in the lock")
    k.add_argument("--cache", type=Path, metavar="DIR",
                   help="download cache (default $XDG_CACHE_HOME/airlock or ~/.cache/airlock)")
    k.add_argument("--index-url", metavar="URL", help="package index for pip (a mirror)")
    k.add_argument("--find-links", action="append", default=[], metavar="DIR|URL",
                   help="more places pip may take wheels from (repeatable)")
    json_option(k)


def run(a: argparse.Namespace) -> KitBuilt:
    from bundler.build.agentkit import DEFAULT_GLIBC, KitTarget, build_agent_kit
    from bundler.build.spec import build_time
    from keys.kitverify import host_platform

    target = KitTarget(a.platform or host_platform(),
                       a.python or f"{sys.version_info.major}.{sys.version_info.minor}",
                       a.glibc or DEFAULT_GLIBC, tuple(a.extra))
    secrets = secrets_from(a)
    signers = [signer_for(k, secrets, a) for k in a.key]
    index = (["--index-url", a.index_url] if a.index_url else []) + [
        arg for link in a.find_links for arg in ("--find-links", link)]
    with phase_bars() as bars:
        result = build_agent_kit(
            target, signers, a.output, expires=build_time() + parse_duration(a.expires),
            project=a.project, lock=a.lock, update_lock=a.update_lock, cache=a.cache,
            index=index, progress=bars, force=a.force, reads=key_files(a.key))
    return KitBuilt(result.to_dict())
