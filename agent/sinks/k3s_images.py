"""The ``k3s-images`` image sink: an oci-archive per image in k3s's (or RKE2's) images directory.

k3s and RKE2 import every tarball in their agent's images directory when they
start (``/var/lib/rancher/k3s/agent/images``, RKE2's under
``/var/lib/rancher/rke2``): the air-gap install those projects document. Each
image becomes ``airlock-RELEASE-ID-N.tar`` there, the oci-archive the
``command`` sink makes (``agent.sinks.command.write_oci_archive``), written
beside as a hidden ``.NAME.partial`` and renamed into place, so the runtime
never imports half a file. Archives of other releases are left for rollback::

    sink = K3sImagesSink(Path("/var/lib/rancher/k3s/agent/images"))
    sink.deliver(release, blob_path)
    # agent.yaml: image_sink: {type: k3s-images, path: /var/lib/rancher/rke2/agent/images}
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.sinks.command import write_oci_archive
from airlock.errors import DeliveryError
from airlock.files import fsync_dir

if TYPE_CHECKING:
    from keys.release import Release

__all__ = ["DEFAULT_K3S_IMAGES", "K3sImagesSink"]

DEFAULT_K3S_IMAGES = Path("/var/lib/rancher/k3s/agent/images")


class K3sImagesSink:
    name = "k3s-images"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> K3sImagesSink:
        return cls(Path(config.get("path") or DEFAULT_K3S_IMAGES))

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        if not release.images:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for n, image in enumerate(release.images, 1):
                final = self.path / f"airlock-{release.id}-{n}.tar"
                partial = self.path / f".{final.name}.partial"
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                write_oci_archive(partial, image, blob_path)
                with open(partial, "rb") as f:
                    os.fsync(f.fileno())
                os.rename(partial, final)
            fsync_dir(self.path)
        except OSError as e:
            raise DeliveryError(f"image sink k3s-images: cannot write into {self.path}: "
                                f"{e.strerror or e}") from None
