"""``airlock-agent install``: verify, store, health-check and switch to a bundle.

    airlock-agent install /media/usb/vision-1.3.0.airlock.part001 --json
    airlock-agent install - < vision-1.3.0.airlock
    airlock-agent install http://relay:9401/bundles/vision-7.airlock

From a URL (a site relay's ``/bundles/``) the bundle streams in through
``agent.http_source``, resumed with Range when the connection drops, and is
verified exactly as from a stick: the relay is not trusted.

The work is ``agent.operations.install_run``, the drop folder's too: the
envelope, the install, then the agent kit the release carries.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from agent.commands.base import layout_of, tell
from airlock.command import Reported
from airlock.console import json_option, phase_bars, progress
from airlock.errors import UsageError

EXAMPLES = ("airlock-agent install /media/usb/vision-1.3.0.airlock.part001 --json",)
DESCRIPTION = None
_HOOK_LINES = 5  # lines of a hook's output install shows (the journal keeps its tail)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE",
                   help="the bundle file; or its parts: BUNDLE.part001, BUNDLE.parts.json "
                   "or their directory; - to read it from standard input; or an http(s) "
                   "URL (a site relay's /bundles/RELEASE-ID.airlock)")
    p.add_argument("--no-switch", action="store_true",
                   help="install and health-check, but keep the active release")
    p.add_argument("--hold", type=float, metavar="SECONDS",
                   help="switch, but go back to the previous release unless 'commit' comes "
                        "within SECONDS")
    p.add_argument("--visit", type=Path, metavar="VISIT.json",
                   help="a directed device's visit ('airlock direct'); default: visit.json or "
                   "*.visit.json beside the bundle. Time tokens (time.json, *.time.json) "
                   "beside the bundle are applied first")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for another agent command to finish")
    p.add_argument("--read-token-file", type=Path, metavar="FILE",
                   help="with a URL: the relay's read token, in FILE")
    json_option(p)


@dataclass(frozen=True)
class Installed(Reported):
    """A release installed (or found already active), and what became of its agent kit."""

    def text(self) -> str:
        d = self.data
        agent = _agent_line(d.get("agent"))
        if not d["installed"]:
            return str(d["message"]) + agent
        where = "active" if d["switched"] else "installed, not switched to"
        if d.get("held_until"):
            where += (f", held until {d['held_until']} ('airlock-agent commit' makes it "
                      f"final, else {d['previous']} comes back)")
        return "\n".join([
            f"installed {d['name']} {d['version']} (sequence {d['sequence']}), {where}; "
            f"{d['blobs_stored']} blob(s) stored, {d['blobs_skipped']} already present, "
            f"health ok in {d['health_s']:.1f} s; total {d['seconds']:.1f} s",
            *_activation_lines(d.get("activation")), *_rotation_lines(d.get("trust_rotated"))]
        ) + agent


@dataclass(frozen=True)
class FlagsInstalled(Reported):
    """The bundle was a signed flags set: applied, models untouched."""

    def text(self) -> str:
        d = self.data
        return (f"applied flags {d['name']} sequence {d['sequence']} (models untouched): "
                + ", ".join(f"{k}={json.dumps(v['value'])}" for k, v in d["flags"].items()))


def run(args: argparse.Namespace) -> Installed | FlagsInstalled:
    from agent.http_source import HttpBundle, is_url
    from agent.operations import install_run
    from airlock.format.parts import open_media

    layout = layout_of(args)
    layout.require_initialised()
    # Opened before the lock is taken: a path that is not a bundle file (a FIFO nobody
    # writes to, /dev/zero, a directory that is not a bundle's parts) is refused without
    # holding up other commands.
    pulled = None
    stream: IO[bytes]
    stick = None
    if is_url(args.bundle):
        pulled = HttpBundle(args.bundle, token=_token(args.read_token_file))
        stream, size = cast(IO[bytes], pulled), pulled.size  # a RawIOBase is a binary IO
    else:
        stream, size = open_media(args.bundle)
        given = Path(args.bundle)
        stick = None if args.bundle == "-" else (given if given.is_dir() else given.parent)
    with stream, progress(size, "installing") as tick, phase_bars() as bars:
        result = install_run(layout, stream, label=args.bundle, switch=not args.no_switch,
                             hold=args.hold, wait=args.wait, progress=tick, phases=bars,
                             notify=tell, stick=stick, visit=args.visit)
    if pulled is not None:
        result["download"] = pulled.stats()
    # agent.install applies a flags bundle as it is, and says so with "applied".
    return FlagsInstalled(result) if result.get("applied") is True else Installed(result)


def _token(path: Path | None) -> str | None:
    from airlock.files import read_bounded

    if path is None:
        return None
    try:
        return read_bounded(path, 4096).decode().strip() or None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read --read-token-file {path}: {e}") from None


def _rotation_lines(rotated: dict[str, Any] | None) -> list[str]:
    """A trust root the bundle carried is now this device's: said once, where it happened."""
    if not rotated:
        return []
    keys = "; ".join(f"{label} +{rotated[k]['added']} -{rotated[k]['removed']}"
                     for k, label in (("root_keys", "root keys"), ("release_keys", "release keys"))
                     if rotated[k]["added"] or rotated[k]["removed"])
    return [f"trust root rotated: version {rotated['from_version']} -> "
            f"{rotated['to_version']}, expires {rotated['expires']}"
            + (f" ({keys})" if keys else " (same keys)")]


def _agent_line(agent: dict[str, Any] | None) -> str:
    if not agent:
        return ""
    if agent.get("updated"):
        return f"\nagent updated to {agent['version']} (was {agent['previous_version']})"
    return f"\nagent not updated: {agent['reason']}"


def _activation_lines(activation: dict[str, Any] | None) -> list[str]:
    """What the post-switch hook and the probe said, as the person at the site should see it."""
    lines: list[str] = []
    for key, label in (("hook", "post-switch hook"), ("probe", "probe")):
        step = (activation or {}).get(key)
        if not step or step.get("reason", "").startswith("no "):
            continue
        lines.append(f"{label}: {'ok' if step['ok'] else 'FAILED'} in {step['seconds']:.1f} s")
        # The text is already inert: its line breaks arrive escaped, as two characters.
        output = [ln for ln in str(step.get("output_tail") or "").split("\\n") if ln.strip()]
        lines += [f"  | {ln}" for ln in output[-_HOOK_LINES:]]
    return lines
