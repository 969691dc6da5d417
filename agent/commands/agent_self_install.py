"""``airlock-agent self-install``: finish installing this agent from a kit (run by install.sh).

    sh install.sh --trust root.json   # runs: airlock-agent self-install --kit DIR --prefix /opt/airlock
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from agent.commands.base import layout_of
from airlock.command import Reported
from airlock.console import json_option

EXAMPLES = ("sh install.sh --trust root.json   # runs: airlock-agent "
            "self-install --kit DIR --prefix /opt/airlock",)
DESCRIPTION = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kit", type=Path, required=True, help="the unpacked kit directory")
    p.add_argument("--prefix", type=Path, default=Path("/opt/airlock"),
                   help="where agents live (default /opt/airlock)")
    p.add_argument("--trust", type=Path, help="trust root, for a ROOT not initialised yet")
    p.add_argument("--bin-dir", type=Path, default=Path("/usr/local/bin"),
                   help="where to link airlock-agent (default /usr/local/bin)")
    p.add_argument("--systemd-dir", type=Path,
                   help="where the agent's systemd unit is written; must exist (default "
                        "/etc/systemd/system, when there is one)")
    p.add_argument("--enable", action="store_true",
                   help="then run systemctl daemon-reload && systemctl enable --now "
                        "airlock-agent.service")
    p.add_argument("--device-id", help="device name for init (default: the host name)")
    p.add_argument("--ring", help="deployment ring for init")
    p.add_argument("--no-init", action="store_true", help="do not run init on a new ROOT")
    json_option(p)


@dataclass(frozen=True)
class SelfInstalled(Reported):
    def text(self) -> str:
        from agent.self.kit_install import NEXT

        d = self.data
        done = (f"agent {d['version']} is active in {d['prefix']}" if d["updated"] else
                f"agent {d['version']} was already active in {d['prefix']}; checked")
        said = [done, f"airlock-agent linked at {d['linked']}"]
        if d["initialised"]:
            said.append(f"initialised {d['root']}")
        if d.get("trust_rotated"):
            said.append(f"trust root of {d['root']} rotated to version {d['trust_rotated']}")
        if d.get("unit_kept"):
            said.append(f"kept the unit that was there (not written by install.sh) as "
                        f"{d['unit_kept']}")
        if d["unit"]:
            said.append(f"systemd unit {d['unit']}")
        said += [f"recovered: {r}" for r in d["recovered"]]
        if d["unit"] and d.get("enabled"):
            said.append("started: " + " && ".join(" ".join(c) for c in NEXT))
        elif d["unit"]:
            said.append("next: " + " && ".join(" ".join(c) for c in NEXT))
        return "\n".join(said)


def run(args: argparse.Namespace) -> SelfInstalled:
    from agent.self.kit_install import self_install

    return SelfInstalled(self_install(
        args.kit.absolute(), args.prefix.absolute(), layout_of(args),
        trust_file=args.trust.absolute() if args.trust else None,
        bin_dir=args.bin_dir.absolute(), systemd_dir=args.systemd_dir,
        device_id=args.device_id, ring=args.ring, init=not args.no_init, enable=args.enable))
