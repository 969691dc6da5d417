"""Image sinks: where a release's container images go on the device.

One module per backend, one small interface (like RAUC's ``bootloaders/``)::

    sink = make_sink({"type": "oci-dir"}, root / "images")
    sink.deliver(release, blob_path)   # before the switch; raises on failure

``blob_path(digest)`` returns the verified file of a blob in the agent's
content store. A sink must not remove images of other releases: rollback
relies on the previous release's images still being there. Delivering the
same release twice is harmless.

Backends (config keys in docs/REGISTRIES.md):

* ``oci-dir`` (default): an OCI image layout at ``path`` (default
  ``ROOT/images``) that containerd, podman and skopeo import from;
* ``registry``: push every image, manifests byte for byte, to a site registry
  (needs the ``[registry]`` extra on the device; nothing else of the agent does);
* ``command``: run a command per image with ``{archive}`` (an oci-archive
  tar of the image) and ``{ref}``, e.g. ``ctr -n k8s.io images import {archive}``.

* ``k3s-images``: an oci-archive per image in k3s's or RKE2's agent images
  directory (``path``, default ``/var/lib/rancher/k3s/agent/images``), which
  they import when they start.

Modules: ``oci_dir``, ``registry``, ``command`` and ``k3s_images`` (one per
backend, as above; ``oci-dir`` lives in ``oci_dir``, ``k3s-images`` in
``k3s_images``), and ``settings`` (reading a sink's settings, shared by the
backends).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airlock.errors import UsageError

if TYPE_CHECKING:
    from keys.release import Release

__all__ = ["SINK_TYPES", "ImageSink", "make_sink"]


class ImageSink(Protocol):
    name: str

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        """Hand every image of ``release`` to the runtime; raise AirlockError on failure."""


_KEYS = {
    "oci-dir": {"type", "path"},
    "registry": {"type", "registry", "insecure", "auth", "prefix", "attempts"},
    "command": {"type", "command", "timeout_s"},
    "k3s-images": {"type", "path"},
}
#: The image sink types, as ``--sink`` takes them.
SINK_TYPES: tuple[str, ...] = tuple(_KEYS)


def make_sink(config: dict[str, Any], images_dir: Path) -> ImageSink:
    """The sink named by ``config["type"]`` (default ``oci-dir`` under ``images_dir``).

    Bad configuration is a UsageError (exit 2) naming the key.
    """
    kind = config.get("type", "oci-dir")
    if kind not in _KEYS:
        raise UsageError(f"image sink type {kind!r} is unknown; use one of: {', '.join(_KEYS)}")
    unknown = set(config) - _KEYS[kind]
    if unknown:
        raise UsageError(
            f"image sink {kind!r}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"expected: {', '.join(sorted(_KEYS[kind] - {'type'}))}"
        )
    if kind == "oci-dir":
        from agent.sinks.oci_dir import OciDirSink

        return OciDirSink(Path(config.get("path") or images_dir))
    if kind == "k3s-images":
        from agent.sinks.k3s_images import K3sImagesSink

        return K3sImagesSink.from_config(config)
    if kind == "registry":
        from agent.sinks.registry import RegistrySink

        return RegistrySink.from_config(config)
    from agent.sinks.command import CommandSink

    return CommandSink.from_config(config, images_dir)
