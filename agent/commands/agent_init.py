"""``airlock-agent init``: lay out ROOT, store the trust root, create the device key.

    airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 --ring canary
    airlock-agent --root /var/lib/airlock init --trust root.json --label npu=hailo --label site=north
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.commands.base import layout_of
from agent.commands.sink_options import sink_options
from agent.journal import Journal
from agent.layout import AgentConfig, Layout
from agent.lock import AgentLock
from airlock.console import json_option, read_input, say
from airlock.errors import UsageError
from airlock.files import fsync_dir, write_atomic, write_json

EXAMPLES = ("airlock-agent --root /var/lib/airlock init --trust root.json --device-id cam-7 "
            "--ring canary",)
DESCRIPTION = ("Lay out ROOT, store the trust root, create the device key. The image sink and\n"
               "its settings are checked here: a bad one is exit 2 now, not at the first install.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", type=Path, required=True, metavar="ROOT.json",
                   help="the trust root this device will trust (from 'airlock keys init')")
    p.add_argument("--device-id", metavar="NAME", help="device name (default: the host name)")
    p.add_argument("--ring", metavar="RING",
                   help="deployment ring this device belongs to (default: none; then only "
                   "releases for every ring install)")
    p.add_argument("--directed", action="store_true",
                   help="install only releases a signed visit ('airlock direct') names for "
                   "this device id")
    p.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                   help="a label of this device that model variants may select by "
                   "(e.g. npu=hailo, site=north); repeatable")
    sink_options(p, "oci-dir")
    json_option(p)


@dataclass(frozen=True)
class Initialised:
    root: str
    device_id: str
    ring: str | None
    trust_version: int
    device_key: str
    device_keyid: str
    device_public_key: str
    sink: dict[str, Any]
    facts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)  # e.g. a registry not reachable now
    directed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        from agent.facts import facts_line

        return (f"initialised {self.root} for device {self.device_id}"
                + (f" in ring {self.ring}" if self.ring else "")
                + f" (trust root version {self.trust_version})\n"
                + ("directed: it installs only releases a signed visit names for "
                   f"{self.device_id}\n" if self.directed else "")
                + f"device key {self.device_keyid} in {self.device_key}; it signs this "
                  "device's inventories and reports.\n"
                + "enroll it at headquarters: copy that file there and run\n"
                + f"  {self.enroll_command}\n"
                + f"the public key, on one line: {self.device_public_key}\n"
                + f"facts     {facts_line(self.facts)}")

    @property
    def enroll_command(self) -> str:
        """The exact command headquarters runs, with the real key path (quoted for a shell)."""
        import shlex

        return shlex.join(["airlock", "report", "enroll", self.device_key,
                           "--device-id", self.device_id])


def run(args: argparse.Namespace) -> Initialised:
    from agent.configure import check_ring, check_sink, sink_settings, sink_unreachable
    from agent.facts import parse_pairs
    from keys.trust import TrustRoot

    layout = layout_of(args)
    if layout.is_initialised():
        raise UsageError(f"{layout.root} is already initialised; use another --root "
                         "('airlock-agent config' changes its settings)")
    trust = TrustRoot.given(read_input(args.trust, "trust root"), f"--trust {args.trust}")
    if args.ring is not None:
        check_ring(args.ring)
    # Before anything is written: a sink the first install could not use is refused now.
    labels = {k: v for k, v in parse_pairs(args.label, "--label").items() if v}
    sink = sink_settings(args.sink, args.sink_option)
    check_sink(sink, layout.images)
    for d in layout.directories():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create {d}: {e.strerror}; choose another --root") from None
    config = AgentConfig(args.device_id or socket.gethostname(), args.ring, sink, labels=labels)
    facts = _lay_out(layout, trust.to_bytes(), trust.version, config, directed=args.directed)
    import json

    from keys.keyfile import load_public_key

    key = load_public_key(layout.device_pub)
    # One line: the text output escapes line breaks, and one line copies whole from a terminal.
    one_line = json.dumps(json.loads(layout.device_pub.read_bytes()), sort_keys=True,
                          separators=(",", ":"))
    warnings = [w for w in (sink_unreachable(config.sink),) if w]
    for w in warnings:
        say("airlock-agent", "warning", w)
    return Initialised(str(layout.root), config.device_id, config.ring, trust.version,
                       str(layout.device_pub), key.keyid, one_line, config.sink, facts, warnings,
                       args.directed)


def _lay_out(layout: Layout, trust_bytes: bytes, trust_version: int,
             config: AgentConfig, *, directed: bool = False) -> dict[str, Any]:
    """Under the lock: trust root, sequences, device key, format, facts, journal, then
    agent.yaml; the facts written."""
    from agent.facts import refresh
    from agent.rootformat import write_format
    from keys.keyfile import generate_keypair

    with AgentLock(layout.lock):
        write_atomic(layout.trust_root, trust_bytes)
        write_json(layout.sequences, {})
        if directed:
            from agent.directed import enable

            enable(layout)
        for p in (layout.device_key, layout.device_pub):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        generate_keypair("device", layout.root)
        from agent.decrypt import ensure_key

        for p in (layout.encryption_key, layout.encryption_pub):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        ensure_key(layout)  # EC P-256: what releases are encrypted to (--encrypt-to)
        fsync_dir(layout.root)
        write_format(layout)
        facts = refresh(layout, config.labels, config.facts)
        Journal(layout.journal).append("initialised", device_id=config.device_id,
                                       ring=config.ring, trust_version=trust_version,
                                       labels=config.labels or None)
        import yaml

        # Written last: its presence is what "initialised" means.
        write_atomic(layout.config, yaml.safe_dump(config.to_dict(), sort_keys=True).encode())
    return facts
