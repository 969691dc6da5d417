"""The ``command`` image sink: hand each image to a runtime's own import command.

Config::

    {"type": "command", "command": "ctr -n k8s.io images import {archive}", "timeout_s": 600}

For every image (and platform) of the release the sink writes an
``oci-archive`` tar of that one image (``oci-layout``, ``index.json`` naming
it by ``org.opencontainers.image.ref.name`` and ``io.containerd.image.name``,
its blobs) to a temp file under ``ROOT/images/.tmp``, then runs the command
with ``{archive}`` (the tar's path) and ``{ref}`` (the image reference)
filled in. The template is split like a shell would (``shlex``) but never
run by a shell, so a reference cannot inject anything. Other examples:
``podman load -i {archive}``, ``skopeo copy oci-archive:{archive} containers-storage:{ref}``.
A command that fails or times out fails the delivery (exit 4, the previous
release stays active), with the last line it printed. The command runs in
``ROOT/images``, in its own process group (killed as a whole on timeout),
with the allowlisted environment of :mod:`airlock.spawn`; a runtime that
needs another variable gets it from the template, e.g.
``env CONTAINERD_ADDRESS=/run/k3s/containerd/containerd.sock ctr images import {archive}``.
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.sinks.oci_dir import image_blobs, index_entries
from agent.sinks.settings import config_number
from airlock.errors import DeliveryError, UsageError
from airlock.format import oci
from airlock.spawn import child_env, run_contained
from keys.release import ImageEntry, Release

__all__ = ["CommandSink", "write_oci_archive"]


def write_oci_archive(out: Path, image: ImageEntry, blob_path: Callable[[str], Path]) -> None:
    """An oci-archive tar holding exactly ``image`` (streamed from the store)."""
    size = blob_path(image.manifest).stat().st_size
    index = {"schemaVersion": 2, "manifests": index_entries(image, size)[:1]}
    small = {
        "oci-layout": oci.oci_layout(),
        "index.json": json.dumps(index).encode(),
    }
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in small.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for digest in image_blobs(image):
            src = blob_path(digest)
            info = tarfile.TarInfo(oci.blob_path(digest))
            info.size, info.mode = src.stat().st_size, 0o644
            with src.open("rb") as f:
                tar.addfile(info, f)


class CommandSink:
    name = "command"

    def __init__(self, template: str, scratch: Path, timeout_s: float = 600.0) -> None:
        self.template, self.scratch, self.timeout_s = template, scratch, timeout_s

    @classmethod
    def from_config(cls, config: dict[str, Any], images_dir: Path) -> CommandSink:
        template = config.get("command")
        if not isinstance(template, str) or not template.strip():
            raise UsageError(
                "image sink 'command' needs 'command', e.g. 'ctr -n k8s.io images import {archive}'"
            )
        try:
            words = shlex.split(template)
            for w in words:
                w.format(archive="", ref="")
        except (ValueError, KeyError, IndexError) as e:
            raise UsageError(
                f"image sink 'command': bad template {template!r}: {e}; "
                "placeholders are {archive} and {ref}"
            ) from None
        timeout = config_number(config, "timeout_s", 600.0)
        return cls(template, images_dir / ".tmp", timeout)

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        if not release.images:
            return
        self.scratch.mkdir(parents=True, exist_ok=True)
        for image in release.images:
            with tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
                archive = Path(tmp) / "image.tar"
                try:
                    write_oci_archive(archive, image, blob_path)
                except OSError as e:
                    raise DeliveryError(
                        f"image sink command: cannot write the archive of "
                        f"{image.ref}: {e.strerror or e}"
                    ) from None
                self._run(image, archive)

    def _run(self, image: ImageEntry, archive: Path) -> None:
        argv = [w.format(archive=str(archive), ref=image.ref) for w in shlex.split(self.template)]
        shown = shlex.join(argv)
        try:
            done = run_contained(argv, cwd=self.scratch.parent, env=child_env(),
                                 timeout_s=self.timeout_s)
        except FileNotFoundError:
            raise DeliveryError(
                f"image sink command: {argv[0]!r} not found (for {image.ref})"
            ) from None
        except OSError as e:
            raise DeliveryError(
                f"image sink command: cannot run '{shown}': {e.strerror or e} (for {image.ref})"
            ) from None
        said = done.last_line(300)
        if done.timed_out:
            raise DeliveryError(
                f"image sink command: '{shown}' did not finish within {self.timeout_s:g}s "
                f"(for {image.ref}; killed)"
            )
        if not done.ok:
            raise DeliveryError(
                f"image sink command: '{shown}' exited {done.returncode} for {image.ref}"
                + (f": {said}" if said else "")
            )
