"""Image sinks: where a release's container images go on the device.

One module per backend, one small interface (like RAUC's ``bootloaders/``)::

    sink = make_sink({"type": "oci-dir"}, root_layout)
    sink.deliver(release, blob_path)   # before the switch; raises on failure

``blob_path(digest)`` returns the verified file of a blob in the agent's
content store. A sink must not remove images of other releases: rollback
relies on the previous release's images still being there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from keys.release import Release

__all__ = ["ImageSink", "make_sink"]


class ImageSink(Protocol):
    name: str

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        """Hand every image of ``release`` to the runtime; raise AirlockError on failure."""


def make_sink(config: dict[str, Any], images_dir: Path) -> ImageSink:
    """The sink named by ``config["type"]`` (default ``oci-dir`` under ``images_dir``)."""
    from keys.errors import UsageError

    kind = config.get("type", "oci-dir")
    raise UsageError(f"image sink {kind!r} is not available yet")
