"""ROOT's on-disk layout: the one module that knows where everything lives.

::

    ROOT/agent.yaml          device config (device id, ring, image sink); written last by init
    ROOT/device.key|.pub     the device's Ed25519 key (signed reports)
    ROOT/device-encryption.key|.pub  its EC P-256 key: what encrypted releases are opened with
    ROOT/trust/root.json     the trust root; trust/sequences.json: highest sequence per name;
                             trust/agent.json: newest agent version accepted (anti-rollback);
                             trust/time.json: the time floor (agent.timefloor)
    ROOT/format.json         which ROOT format this is (agent.rootformat; absent: format 1)
    ROOT/blobs/sha256/<hex>  content store, shared by all releases (read-only files)
    ROOT/releases/ID/        models/<model>/<file> (hard links into the store: the model,
                             its ONNX external data, inputs.npz|outputs.npz), flags.json,
                             release.json (signed), installed.json, health.json
    ROOT/current, previous   symlinks "releases/ID", replaced by atomic rename
    ROOT/transaction.json    the operation in progress and the links to restore on a crash
    ROOT/staging/            work in progress; emptied by recovery
    ROOT/images/             default image sink (an OCI layout)
    ROOT/journal.jsonl       hash-chained record of every action
    ROOT/lock                flock(2) held by the one mutating command
    ROOT/samples/MODEL/      recent input samples (.npz) the application drops for drift
    ROOT/drops.json          drop-folder bundles already handled by ``serve``
    ROOT/rolled-back.json    releases an operator rolled back: the drop folder leaves them
    ROOT/last-report.json    where the last signed report ended in the journal
    ROOT/hold.json           an install held until ``commit`` (agent.hold), with its deadline
    ROOT/challenger.json     a release staged with ``install --no-switch`` and its shadow runs
    ROOT/flags/              applied flags sets: state.json, history/NAME.SEQ.json (agent.feature_flags)
    ROOT/serve.lock          flock(2) held by the one running ``serve``
    ROOT/facts.json          the device's facts (agent.facts): probed at init and each start
    ROOT/releases/ID/variants.json  the variant chosen for each model (keys.variants)

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
from typing import TYPE_CHECKING, Any

from agent.runtime import DeviceRuntime
from airlock.errors import (
    AirlockError,
    DamagedRootError,
    FormatError,
    NotInitialisedError,
    UsageError,
)
from airlock.files import read_bounded, read_json
from airlock.format.oci import digest_hex
from airlock.limits import KEEP_RELEASES, MAX_METADATA_BYTES, MAX_SEQUENCE, RESERVE_BYTES

if TYPE_CHECKING:  # python-tuf and PyYAML load with the first release, trust root or config
    from keys.release import Release
    from keys.trust import TrustRoot

__all__ = ["DEFAULT_ROOT", "AgentConfig", "Layout", "is_real_dir", "root_from_env"]

DEFAULT_ROOT = Path("/var/lib/airlock")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}-[0-9]+\Z")


def is_real_dir(path: Path) -> bool:
    """A directory, not a symbolic link to one: the agent never follows a link out of ROOT."""
    return path.is_dir() and not path.is_symlink()


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
    #: The ONNX Runtime setup of the device's application (``airlock-agent config``).
    runtime: DeviceRuntime = field(default_factory=DeviceRuntime)
    #: Releases kept besides current, previous and a hold's fallback after a good install.
    keep_releases: int = KEEP_RELEASES
    #: Labels the operator gave (``init --label``, ``config --label``): variant selectors.
    labels: dict[str, str] = field(default_factory=dict)
    #: Facts the operator stated that the probe cannot see (``config --fact``).
    facts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"device_id": self.device_id, "ring": self.ring, "sink": self.sink,
               "reserve_bytes": self.reserve_bytes}
        if not self.runtime.is_empty():
            out["runtime"] = self.runtime.to_dict()
        if self.keep_releases != KEEP_RELEASES:
            out["keep_releases"] = self.keep_releases
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.facts:
            out["facts"] = dict(self.facts)
        return out

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
        keep = raw.get("keep_releases", KEEP_RELEASES)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise UsageError(f"{where}: 'keep_releases' must be a non-negative integer")
        pairs = []
        for key in ("labels", "facts"):
            value = raw.get(key) or {}
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise UsageError(f"{where}: '{key}' must map names to words")
            pairs.append(dict(value))
        return cls(raw["device_id"], ring, dict(sink), reserve,
                   DeviceRuntime.from_config(raw.get("runtime"), str(where)), keep, *pairs)


class Layout:
    """Paths under ROOT and the few reads every module needs."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.config = self.root / "agent.yaml"
        self.device_key = self.root / "device.key"
        self.device_pub = self.root / "device.pub"
        # EC P-256: what releases are encrypted to (keys.encryption_keys), apart from signing.
        self.encryption_key = self.root / "device-encryption.key"
        self.encryption_pub = self.root / "device-encryption.pub"
        self.trust_dir = self.root / "trust"
        self.trust_root = self.trust_dir / "root.json"
        self.sequences = self.trust_dir / "sequences.json"
        self.time_floor = self.trust_dir / "time.json"  # agent.timefloor
        self.visit_record = self.trust_dir / "visit.json"  # agent.directed
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
        self.samples = self.root / "samples"
        self.drops = self.root / "drops.json"
        self.last_report = self.root / "last-report.json"
        self.hold = self.root / "hold.json"
        self.challenger = self.root / "challenger.json"
        self.operator_rollbacks = self.root / "rolled-back.json"
        self.flags_dir = self.root / "flags"
        self.flags_state = self.flags_dir / "state.json"
        self.serve_lock = self.root / "serve.lock"
        self.facts = self.root / "facts.json"

    # -- paths -------------------------------------------------------------
    def blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def rel(self, path: Path) -> str:
        """``path`` as messages name it: relative to ROOT."""
        return os.path.relpath(path, self.root)

    def release_dir(self, release_id: str) -> Path:
        if not _ID.fullmatch(release_id):
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
    def is_release_id(name: str) -> bool:
        return _ID.fullmatch(name) is not None

    @staticmethod
    def id_from_target(target: str) -> str | None:
        head, _, rid = target.partition("/")
        return rid if head == "releases" and _ID.fullmatch(rid) else None

    def directories(self) -> list[Path]:
        return [self.root, self.trust_dir, self.blobs.parent, self.blobs, self.releases,
                self.staging, self.images]

    # -- state -------------------------------------------------------------
    def is_initialised(self) -> bool:
        # init writes agent.yaml last: whatever stands there (even a damaged one) means the
        # root was set up, and its other parts are then damage for fsck, not a fresh start.
        return os.path.lexists(self.config)

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise NotInitialisedError(
                f"{self.root} is not an initialised agent root; run "
                f"'airlock-agent --root {self.root} init --trust root.json' first"
            )

    def load_config(self) -> AgentConfig:
        """``agent.yaml``; any fault in it is a UsageError (exit 2) of one line."""
        import yaml

        try:
            text = read_bounded(self.config).decode()
            raw = yaml.safe_load(text)
        except FileNotFoundError:
            raise NotInitialisedError(f"{self.config} is missing") from None
        except OSError as e:
            raise UsageError(f"cannot read {self.config}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{self.config} is not UTF-8 text") from None
        except ValueError as e:
            raise UsageError(f"{self.config}: {e}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            what = getattr(e, "problem", None) or type(e).__name__
            raise UsageError(f"{self.config} is not valid YAML{where}: {what}") from None
        except RecursionError:
            raise UsageError(f"{self.config} nests too deeply to be a config") from None
        return AgentConfig.from_dict(raw, self.config)

    def release_ids(self) -> list[str]:
        """Installed releases: real directories under ``releases/`` named NAME-SEQUENCE."""
        if not is_real_dir(self.releases):
            return []
        return sorted(p.name for p in self.releases.iterdir()
                      if _ID.fullmatch(p.name) and is_real_dir(p))

    def sequences_problem(self) -> str | None:
        """What is wrong with ``trust/sequences.json`` (None: it is sound)."""
        try:
            raw = read_json(self.sequences)
        except (OSError, ValueError) as e:
            return f"unreadable ({_why(e)})"
        return "missing" if raw is None else _sequences_shape(raw)

    def load_sequences(self) -> dict[str, int]:
        """The highest accepted sequence per release name (anti-rollback).

        Strict: a damaged record is never read as "nothing accepted yet", which would
        let an old release back in; ``fsck --repair`` rebuilds it.
        """
        problem = self.sequences_problem()
        if problem:
            raise DamagedRootError(f"{self.rel(self.sequences)} is {problem}; nothing was "
                                   "changed; run 'airlock-agent fsck --repair'")
        return dict(read_json(self.sequences))

    def load_release(self, release_id: str) -> Release:
        """The release metadata of an installed release (verified when it was installed)."""
        from keys.release import Release

        path = self.release_dir(release_id) / "release.json"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise FormatError(f"cannot read {path}: {e.strerror}") from None
        release = Release.from_bytes(data)
        if release.has_variants():
            # The variant of each model picked at install (agent.install); the others'
            # blobs were never stored.
            chosen = path.with_name("variants.json")
            try:
                raw = read_json(chosen)
            except (OSError, ValueError) as e:
                raise FormatError(f"cannot read {chosen}: {e}") from None
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                raise FormatError(f"{chosen} is not a mapping of model to variant")
            release = release.with_variants(raw)
        return release

    def _read_trust(self) -> TrustRoot | str:
        from keys.trust import TrustRoot

        try:
            return TrustRoot.from_bytes(read_bounded(self.trust_root, MAX_METADATA_BYTES))
        except (OSError, ValueError, AirlockError) as e:
            return f"unusable ({_why(e)})"

    def trust_problem(self) -> str | None:
        """What is wrong with the device's trust root (None: it reads and verifies)."""
        trust = self._read_trust()
        return trust if isinstance(trust, str) else None

    def load_trust(self) -> TrustRoot:
        """The device's trust root; verified against itself as it is read."""
        trust = self._read_trust()
        if isinstance(trust, str):
            raise DamagedRootError(f"the device's trust root {self.rel(self.trust_root)} is "
                                   f"{trust}; {RESTORE_TRUST}")
        return trust


#: What a person does about a lost trust root: fsck will not invent the anchor of trust.
RESTORE_TRUST = ("copy the root.json this device was provisioned with (or the newest one "
                 "it rotated to) to ROOT/trust/root.json")


def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return "missing"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _sequences_shape(raw: Any) -> str | None:
    """What is wrong with a parsed ``sequences.json`` (None: a mapping of names to sequences)."""
    if not isinstance(raw, dict):
        return f"a JSON {type(raw).__name__}, not a mapping of release names to sequences"
    for name, seq in raw.items():
        if type(seq) is not int or not 1 <= seq <= MAX_SEQUENCE:
            return f"giving {name!r} the sequence {seq!r}, not an integer in 1..{MAX_SEQUENCE}"
    return None
