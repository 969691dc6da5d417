"""``airlock new``: start a project with a spec, a tiny real model and its golden data.

    airlock new vision
    airlock check vision/airlock.yaml
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.console import json_option

__all__ = ["DESCRIPTION", "EXAMPLES", "Created", "add_arguments", "run"]

EXAMPLES = ("airlock new vision", "airlock new site/cam --name cam-vision")
DESCRIPTION = """\
Writes DIR/airlock.yaml, DIR/models/model.onnx (y = x * 2 + 1, 248 bytes) and
its golden data DIR/golden/inputs.npz and outputs.npz, so `airlock check
DIR/airlock.yaml` passes at once. Replace the model and its golden data with
yours. Nothing is overwritten: an existing spec or model is refused (exit 5).
"""


@dataclass(frozen=True)
class Created:
    """The files of a new project."""

    directory: str
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"directory": self.directory, "files": self.files, "spec": self.files[0]}

    def text(self) -> str:
        return "\n".join([f"wrote {f}" for f in self.files]
                         + [f"next: airlock check {self.files[0]}"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", type=Path, metavar="DIR",
                   help="the project directory (made if missing)")
    p.add_argument("--name", help="release name (default: DIR's name, or 'starter' when it is no plain name)")
    json_option(p)


def run(a: argparse.Namespace) -> Created:
    from bundler.build.starter import write_starter
    from keys.signed_fields import is_plain_name

    # A directory named like a release names it; any other ("my project") gets "starter".
    default = a.directory.resolve().name
    name = a.name or (default if is_plain_name(default) else "starter")
    files = write_starter(a.directory, name)
    return Created(str(a.directory), [str(f) for f in files])
