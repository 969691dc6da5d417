"""``airlock config show``: the host settings in force and where each came from.

    airlock config show --spec airlock.yaml --json

Precedence: flag > environment > config file > default (bundler.build.host_config).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.console import json_option
from bundler.commands.options import subcommands

__all__ = ["DESCRIPTION", "EXAMPLES", "ConfigShown", "add_arguments", "run"]

EXAMPLES = ("airlock config show",)
DESCRIPTION = (
    "Show the host settings build, check and report use when no flag gives them: the\n"
    "signing key(s), the passphrase variable, plain-HTTP registries, the pull cache and\n"
    "the fleet directory; each with where it came from. Precedence: flag > environment\n"
    "(AIRLOCK_KEY, AIRLOCK_PASSPHRASE_ENV, AIRLOCK_INSECURE, AIRLOCK_CACHE, AIRLOCK_FLEET)\n"
    "> config file (airlock.toml beside the spec, airlock.toml here, or\n"
    "$XDG_CONFIG_HOME/airlock/config.toml) > default.")


@dataclass(frozen=True)
class ConfigShown:
    """What ``HostConfig.to_dict()`` says: the file read and every setting with its source."""

    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.config

    def text(self) -> str:
        lines = [f"config file: {self.config['file'] or 'none'}"]
        for name, s in self.config["settings"].items():
            value = s["value"]
            shown = (", ".join(value) or "none") if isinstance(value, list) else (
                "none" if value is None else str(value))
            lines.append(f"{name:<15} {shown}  ({s['source']})")
        return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add = subcommands(p, "config_cmd")
    show = add("show", "the host settings in force and where each came from",
               ("airlock config show", "airlock config show --spec airlock.yaml --json"))
    show.add_argument("--spec", type=Path, metavar="SPEC",
                      help="also read the airlock.toml beside this spec, as build and check do")
    json_option(show)


def run(a: argparse.Namespace) -> ConfigShown:
    from bundler.build.host_config import load_host_config

    return ConfigShown(load_host_config(a.spec).to_dict())
