"""The ``registry`` image sink: push a release's images into a site registry.

For sites that already run one (k3s, Harbor, a plain ``registry:2``)::

    {"type": "registry", "registry": "registry.site:5000", "insecure": false,
     "auth": "/etc/airlock/docker-config.json", "prefix": "airlock"}

Each image goes to the same repository path on the site registry
(``upstream.example/team/app:1.0`` -> ``registry.site:5000/[prefix/]team/app:1.0``):
blobs the registry lacks are uploaded from the agent's verified store, then
the manifest is stored byte for byte, so its digest is the one the release
pins, first by digest, then under the tag. Pushing is idempotent. Nothing is
ever deleted from the registry, so a rolled-back release's images are still
there. With several platforms of one reference, the tag names the first one
the spec listed; the others are reachable by digest.

This is the only part of the agent that needs ``oras`` (the ``[registry]`` extra:
``pip install 'airlock-edge[registry]'``);
the rest installs and runs without it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

from agent.sinks.oci_dir import image_blobs
from agent.sinks.settings import config_bool, config_number
from airlock.errors import AirlockError, DeliveryError, UsageError
from keys.release import Release

__all__ = ["RegistrySink"]


class RegistrySink:
    name = "registry"

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        auth: Path | None = None,
        prefix: str = "",
        attempts: int = 4,
    ) -> None:
        try:
            import oras.provider  # noqa: F401  (fail at configuration time, not mid-install)
        except ImportError:
            raise UsageError(
                "image sink 'registry' needs the registry client on this device: "
                "pip install 'airlock-edge[registry]' (oras, requests)"
            ) from None
        from airlock.registry import RegistryClient

        self.registry, self.prefix = registry, prefix
        self.client = RegistryClient(auth, [registry] if insecure else [], attempts=attempts)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RegistrySink:
        registry = config.get("registry")
        if not isinstance(registry, str) or not registry or "/" in registry:
            raise UsageError(
                "image sink 'registry' needs 'registry': HOST[:PORT] of the site registry"
            )
        auth = config.get("auth")
        if auth is not None and not Path(auth).is_file():
            raise UsageError(f"image sink 'registry': auth file {auth} does not exist")
        return cls(
            registry,
            insecure=config_bool(config, "insecure", False),
            auth=Path(auth) if auth else None,
            prefix=str(config.get("prefix", "")),
            attempts=int(config_number(config, "attempts", 4)),
        )

    def deliver(self, release: Release, blob_path: Callable[[str], Path]) -> None:
        from airlock.registry import parse_ref

        tagged: set[str] = set()
        for image in release.images:
            try:
                dest = parse_ref(image.ref).with_registry(self.registry, self.prefix)
                for digest in image_blobs(image)[1:]:
                    path = blob_path(digest)
                    self.client.upload_blob(
                        dest, digest, path.stat().st_size, partial(_open_binary, path)
                    )
                data = blob_path(image.manifest).read_bytes()
                self.client.put_manifest(dest, data, image.media_type, reference=image.manifest)
                if dest.tag and dest.text not in tagged:
                    self.client.put_manifest(dest, data, image.media_type, reference=dest.tag)
                    tagged.add(dest.text)
            except AirlockError as e:
                raise DeliveryError(f"image sink registry: {e}") from None
            except OSError as e:
                raise DeliveryError(
                    f"image sink registry: {image.ref}: {e.strerror or e}"
                ) from None


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")
