"""The image-sink options of ``init`` and ``config`` (``--sink``, ``--sink-option``).

    sink_options(p, default="oci-dir")   # init; config passes None (keep the current sink)
"""

from __future__ import annotations

import argparse

from agent.sinks import SINK_TYPES

__all__ = ["sink_options"]


def sink_options(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--sink", default=default, choices=SINK_TYPES, metavar="TYPE",
                   help=f"where container images go: {', '.join(SINK_TYPES)} "
                   "(settings in docs/REGISTRIES.md)")
    p.add_argument("--sink-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an image sink setting, e.g. registry=10.0.0.5:5000 (repeatable; "
                   "KEY= removes one)")
