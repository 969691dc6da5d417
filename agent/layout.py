"""ROOT's on-disk layout: the one module that knows where everything lives.

::

    ROOT/agent.yaml          device config (device id, ring, image sink); written last by init
    ROOT/device.key|.pub     the device's Ed25519 key (signed reports)
    ROOT/trust/root.json     the trust root; trust/sequences.json: highest sequence per name;
                             trust/agent.json: newest agent version accepted (anti-rollback)
    ROOT/format.json         which ROOT format this is (agent.rootformat; absent: format 1)
    ROOT/blobs/sha256/<hex>  content store, shared by all releases (read-only files)
    ROOT/releases/ID/        models/<model>/<file> (hard links into the store),
                             models/<model>/inputs.npz|outputs.npz, flags.json,
                             release.json (signed), installed.json, health.json
    ROOT/current, previous   symlinks "releases/ID", replaced by atomic rename
    ROOT/transaction.json    the operation in progress and the links to restore on a crash
    ROOT/staging/            work in progress; emptied by recovery
    ROOT/images/             default image sink (an OCI layout)
    ROOT/journal.jsonl       hash-chained record of every action
    ROOT/lock                flock(2) held by the one mutating command

Example::

    layout = Layout(Path("/var/lib/airlock"))
    layout.require_initialised()
    release = layout.load_release("vision-3")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airlock.errors import FormatError, NotInitialisedError, UsageError
from airlock.limits import RESERVE_BYTES
from airlock.oci import digest_hex
from keys.release import Release
from keys.trust import TrustRoot

__all__ = ["DEFAULT_ROOT", "AgentConfig", "Layout", "root_from_env"]

DEFAULT_ROOT = Path("/var/lib/airlock")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}-[0-9]+$")


def root_from_env(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("AIRLOCK_ROOT")
    return Path(env) if env else DEFAULT_ROOT


@dataclass
class AgentConfig:
    device_id: str
    ring: str | None = None
    sink: dict[str, Any] = field(default_factory=lambda: {"type": "oci-dir"})
    #: Free space kept on top of what an install writes (bytes).
    reserve_bytes: int = RESERVE_BYTES

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "ring": self.ring, "sink": self.sink,
                "reserve_bytes": self.reserve_bytes}

    @classmethod
    def from_dict(cls, raw: Any, where: Path) -> AgentConfig:
        if not isinstance(raw, dict) or not isinstance(raw.get("device_id"), str):
            raise UsageError(f"{where} is not a valid agent config (no device_id)")
        sink = raw.get("sink") or {"type": "oci-dir"}
        ring = raw.get("ring")
        if not isinstance(sink, dict) or not isinstance(sink.get("type", "oci-dir"), str):
            raise UsageError(f"{where}: 'sink' must be a mapping with a 'type'")
        if ring is not None and not isinstance(ring, str):
            raise UsageError(f"{where}: 'ring' must be a string")
        reserve = raw.get("reserve_bytes", RESERVE_BYTES)
        if not isinstance(reserve, int) or reserve < 0:
            raise UsageError(f"{where}: 'reserve_bytes' must be a non-negative integer")
        return cls(raw["device_id"], ring, dict(sink), reserve)


class Layout:
    """Paths under ROOT and the few reads every module needs."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.config = self.root / "agent.yaml"
        self.device_key = self.root / "device.key"
        self.device_pub = self.root / "device.pub"
        self.trust_dir = self.root / "trust"
        self.trust_root = self.trust_dir / "root.json"
        self.sequences = self.trust_dir / "sequences.json"
        self.agent_record = self.trust_dir / "agent.json"
        self.format_file = self.root / "format.json"
        self.blobs = self.root / "blobs" / "sha256"
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.previous = self.root / "previous"
        self.transaction = self.root / "transaction.json"
        self.staging = self.root / "staging"
        self.images = self.root / "images"
        self.journal = self.root / "journal.jsonl"
        self.lock = self.root / "lock"

    # -- paths -------------------------------------------------------------
    def blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def release_dir(self, release_id: str) -> Path:
        if not _ID.match(release_id):
            raise FormatError(f"{release_id!r} is not a release id (NAME-SEQUENCE)")
        return self.releases / release_id

    def staged_blob(self, digest: str) -> Path:
        return self.staging / f"blob-{digest_hex(digest)}.part"

    def staged_release(self, release_id: str) -> Path:
        return self.staging / f"release-{self.release_dir(release_id).name}"

    @staticmethod
    def temp_of(path: Path) -> Path:
        """The temporary sibling a file or link is written as before its atomic rename."""
        return path.with_name(f".{path.name}.tmp")

    def temp_files(self) -> list[Path]:
        return [self.temp_of(p) for p in (self.current, self.previous, self.transaction)]

    def link(self, which: str) -> Path:
        return {"current": self.current, "previous": self.previous}[which]

    @staticmethod
    def link_target(release_id: str) -> str:
        """What the ``current``/``previous`` symlinks contain (relative, so ROOT can move)."""
        return f"releases/{release_id}"

    @staticmethod
    def id_from_target(target: str) -> str | None:
        head, _, rid = target.partition("/")
        return rid if head == "releases" and _ID.match(rid) else None

    def directories(self) -> list[Path]:
        return [self.root, self.trust_dir, self.blobs.parent, self.blobs, self.releases,
                self.staging, self.images]

    # -- state -------------------------------------------------------------
    def is_initialised(self) -> bool:
        return self.config.is_file() and self.trust_root.is_file()

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise NotInitialisedError(
                f"{self.root} is not an initialised agent root; run "
                f"'airlock-agent --root {self.root} init --trust root.json' first"
            )

    def load_config(self) -> AgentConfig:
        try:
            raw = yaml.safe_load(self.config.read_text())
        except OSError as e:
            raise NotInitialisedError(f"cannot read {self.config}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise UsageError(f"{self.config} is not valid YAML: {e}") from None
        return AgentConfig.from_dict(raw, self.config)

    def release_ids(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if _ID.match(p.name))

    def load_release(self, release_id: str) -> Release:
        """The release metadata of an installed release (verified when it was installed)."""
        path = self.release_dir(release_id) / "release.json"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise FormatError(f"cannot read {path}: {e.strerror}") from None
        return Release.from_bytes(data)

    def load_trust(self) -> TrustRoot:
        """The device's trust root; verified against itself as it is read."""
        try:
            data = self.trust_root.read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read trust root {self.trust_root}: {e.strerror}") from None
        return TrustRoot.from_bytes(data)
