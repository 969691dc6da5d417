"""Check an agent kit with Python's standard library alone; shipped in every kit as verify_kit.py.

A device that has no agent yet has no ``cryptography`` and no ``tuf`` either:
those arrive *in* the kit. So the first check of a kit must run on a bare
``python3``, before anything from the kit is installed or imported. This
module is that check, copied verbatim into every kit by ``airlock
agent-kit`` and run by the kit's ``install.sh``::

    python3 -I verify_kit.py KIT_DIR --trust root.json --prefix /opt/airlock
    # prints "AGENT_ID INSTALLER REQUIREMENTS" and exits 0, or one line and exits 3
    # e.g. "0.2.0-1f3a9c0b7d2e wheels/pip-26.3-py3-none-any.whl requirements.txt"

What it checks, in order, and what it trusts (docs/BOOTSTRAP.md says it for the site):

1. the trust root: ``ROOT/trust/root.json`` of an initialised device, else
   ``--trust``; it must parse, be a TUF root, be unexpired and carry the
   signatures of its own root-role threshold (canonical JSON, as TUF signs).
   A ``--trust`` other than the root ROOT already trusts is taken only as its
   rotation (the next version, signed by the old root role's threshold too);
   anything else is refused (exit 5), naming both files. Every refusal names
   the trust root file it used;
2. ``kit.json``: a TUF ``targets`` document of at most 1 MiB, signed by the
   threshold of the root's **release role** keys (ring-limited signers cannot
   sign kits), unexpired, every field well-formed (:func:`parse_kit`);
3. the files: every file of the kit directory is listed with its exact
   length and sha256, every listed file is there, no links or other types;
4. the device: the kit's platform, Python version and glibc fit this machine;
5. no downgrade: the kit's version is not older than the agent installed
   under ``--prefix`` nor than the newest agent the device accepted.

It trusts the interpreter running it and itself; an attacker who can rewrite
the kit can rewrite this file too, so on a fresh device its verdict is only
as good as the copy you run (run it from a trusted copy, or compare the kit's
sha256 with the one printed at build). Once an agent is installed, later kits
are checked again by that agent with python-tuf, which the kit cannot touch.

Ed25519 is not in the standard library, so :func:`ed25519_verify` implements
RFC 8032's verification here (tests compare it with ``cryptography``). The
same module, imported as ``keys.kitverify``, gives the agent and the bundler
the one rulebook of kit fields (:func:`parse_kit`) and version order
(:func:`version_key`). It imports nothing outside the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "KIT_METADATA",
    "KIT_SECTION",
    "KitDocument",
    "KitError",
    "KitPreconditionError",
    "check_host",
    "check_newer",
    "check_tree",
    "check_venv",
    "ed25519_verify",
    "host_platform",
    "kit_id",
    "load_root",
    "main",
    "parse_kit",
    "verify_kit_json",
    "version_key",
]

KIT_METADATA = "kit.json"
KIT_SECTION = "airlock_kit"
KIT_NAME = "airlock-agent"
MARKER = "airlock-kit.json"  # copy of kit.json inside an installed agent's venv
AGENT_RECORD = "trust/agent.json"  # under ROOT: the newest agent accepted (agent.layout)
#: Mirrors airlock.limits.MAX_KIT_METADATA_BYTES and MAX_KIT_FILES (tests check
#: they agree); this file must run alone, so it cannot import them.
MAX_KIT_METADATA_BYTES = 1024 * 1024
MAX_KIT_FILES = 1000
RELEASE_ROLE = "targets"
_FINAL_VERSION = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,4}\Z")
_PLATFORMS = ("linux/amd64", "linux/arm64")
_PYTHON = re.compile(r"^3\.[0-9]{1,2}\Z")
_GLIBC = re.compile(r"^2\.[0-9]{1,3}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")


class KitError(Exception):
    """The kit is refused: exit 3, nothing installed."""

    exit_code = 3


class KitUsageError(KitError):
    """Bad arguments or a missing trust root: exit 2."""

    exit_code = 2


class KitPreconditionError(KitError):
    """The device already trusts another root: exit 5, nothing installed."""

    exit_code = 5


# -- Ed25519 verification, RFC 8032 section 5.1.7 ----------------------------------
# Written out because the standard library has none and nothing from the kit
# (where cryptography's wheel is) may run before the kit's signature is checked.
# It follows the RFC's reference code (section 6) with extended coordinates; it
# only verifies public data, so timing side channels do not matter here.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]


def _add(p: _Point, q: _Point) -> _Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: _Point) -> _Point:
    q: _Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None  # non-canonical encoding
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s: bytes) -> _Point | None:
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def _compress(p: _Point) -> bytes:
    zinv = pow(p[2], _P - 2, _P)
    x, y = p[0] * zinv % _P, p[1] * zinv % _P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
assert _GX is not None
_G: _Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 verification: [S]B == R + [k]A, with canonical R, S and A."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    if a is None:
        return False
    r_bytes = signature[:32]
    s = int.from_bytes(signature[32:], "little")
    if s >= _L or _decompress(r_bytes) is None:
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + public + message).digest(), "little") % _L
    # [S]B - [k]A encoded must equal R byte for byte (as OpenSSL checks).
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    return _compress(_add(_mul(s, _G), _mul(k, neg_a))) == r_bytes


# -- signed JSON documents -------------------------------------------------------------


def release_form(signed: Any) -> bytes:
    """The bytes a release or kit signature covers (keys.release.ReleaseSerializer)."""
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def canonical_form(value: Any) -> bytes:
    """OLPC canonical JSON, the form TUF signs roots in (securesystemslib.encode_canonical)."""
    return _canonical(value).encode()


def _canonical(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ",".join(_canonical(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v[k])}" for k in sorted(v)) + "}"
    raise KitError(f"trust root holds a value canonical JSON cannot carry ({type(v).__name__})")


def _json_object(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise KitError(f"{what} is larger than {limit} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise KitError(f"{what} is not JSON: {str(e)[:120]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict) \
            or not isinstance(doc.get("signatures"), list):
        raise KitError(f"{what} is not signed metadata (no 'signed' and 'signatures')")
    return doc


def _expiry(signed: Mapping[str, Any], what: str) -> datetime:
    text = signed.get("expires")
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise KitError(f"{what} has no valid 'expires'") from None


def _role_keys(root: Mapping[str, Any], role: str) -> tuple[dict[str, bytes], int]:
    """Ed25519 public keys (by key id) and threshold of ``role`` in a root's signed part."""
    try:
        entry = root["roles"][role]
        threshold = entry["threshold"]
        keys: dict[str, bytes] = {}
        for keyid in entry["keyids"]:
            key = root["keys"][keyid]
            if key.get("keytype") == "ed25519" and key.get("scheme") == "ed25519":
                keys[keyid] = bytes.fromhex(key["keyval"]["public"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise KitError(f"trust root has no well-formed '{role}' role") from None
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise KitError(f"trust root's '{role}' role has no valid threshold")
    return keys, threshold


def _check_signatures(payload: bytes, signatures: Sequence[Any], keys: Mapping[str, bytes],
                      threshold: int, what: str) -> None:
    good: set[str] = set()
    for sig in signatures:
        if not isinstance(sig, dict):
            continue
        keyid, value = sig.get("keyid"), sig.get("sig")
        if isinstance(keyid, str) and keyid in keys and keyid not in good \
                and isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                continue
            if ed25519_verify(keys[keyid], payload, raw):
                good.add(keyid)
    if len(good) < threshold:
        raise KitError(f"{what} has {len(good)} valid signature(s) of the {threshold} required")


def load_root(data: bytes, now: datetime | None = None) -> dict[str, Any]:
    """A trust root's signed part, checked: type, own root-role threshold, expiry."""
    doc = _json_object(data, "trust root", MAX_KIT_METADATA_BYTES * 16)
    signed = doc["signed"]
    if signed.get("_type") != "root":
        raise KitError("trust root is not a TUF root")
    keys, threshold = _role_keys(signed, "root")
    _check_signatures(canonical_form(signed), doc["signatures"], keys, threshold, "trust root")
    if _expiry(signed, "trust root") <= (now or datetime.now(timezone.utc)):
        raise KitError("the trust root has expired; carry a rotated root.json")
    return dict(signed)


# -- the kit document -------------------------------------------------------------------


@dataclass(frozen=True)
class KitDocument:
    """What ``kit.json`` says, checked field by field."""

    version: str  # the agent's version, a final release like 0.2.0
    platform: str  # linux/amd64 | linux/arm64
    python: str  # 3.11
    glibc: str  # the oldest glibc the wheels need, 2.28
    files: dict[str, tuple[int, str]]  # path in the kit -> (length, sha256 hex)
    requirements: str  # the requirements file pip installs from, inside the kit
    installer: str  # path of pip's wheel inside the kit
    expires: datetime


def version_key(version: str) -> tuple[int, ...]:
    """``0.2.0`` -> (0, 2): final release versions in PEP 440 order (trailing zeros dropped)."""
    if not _FINAL_VERSION.match(version):
        raise KitError(f"agent version {version[:40]!r} is not a final release version like 0.2.0")
    parts = [int(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _safe_path(path: object) -> bool:
    if not isinstance(path, str) or not path or len(path) > 300 or path.startswith("/"):
        return False
    return all(_PLAIN.match(part) for part in path.split("/"))


def parse_kit(signed: Mapping[str, Any]) -> KitDocument:
    """The kit's signed part -> KitDocument; KitError naming the first bad field."""
    if signed.get("_type") != "targets":
        raise KitError("kit.json is not a TUF targets document")
    body = signed.get(KIT_SECTION)
    if not isinstance(body, dict) or body.get("name") != KIT_NAME:
        raise KitError(f"kit.json has no '{KIT_SECTION}' section naming {KIT_NAME}")

    def text(key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = body.get(key)
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            raise KitError(f"kit.json field '{KIT_SECTION}.{key}' is missing or malformed")
        return value

    version = text("version")
    version_key(version)
    plat = text("platform")
    if plat not in _PLATFORMS:
        raise KitError(f"kit.json names platform {plat[:40]!r}; kits exist for "
                       + ", ".join(_PLATFORMS))
    targets = signed.get("targets")
    if not isinstance(targets, dict) or not targets or len(targets) > MAX_KIT_FILES:
        raise KitError(f"kit.json must list between 1 and {MAX_KIT_FILES} files")
    files: dict[str, tuple[int, str]] = {}
    for path, info in targets.items():
        if not _safe_path(path) or path == KIT_METADATA:
            raise KitError(f"kit.json lists an unsafe path {str(path)[:80]!r}")
        length = info.get("length") if isinstance(info, dict) else None
        hashes = info.get("hashes") if isinstance(info, dict) else None
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not isinstance(length, int) or isinstance(length, bool) or length < 0 \
                or not isinstance(sha, str) or not _HEX64.match(sha):
            raise KitError(f"kit.json lists {path!r} without a length and sha256")
        files[path] = (length, sha)
    requirements, installer = text("requirements"), text("installer")
    for path in (requirements, installer):
        if path not in files:
            raise KitError(f"kit.json names {path[:80]!r} but does not list it")
    return KitDocument(version, plat, text("python", _PYTHON), text("glibc", _GLIBC), files,
                       requirements, installer, _expiry(signed, "kit.json"))


def verify_kit_json(data: bytes, root: Mapping[str, Any],
                    now: datetime | None = None) -> KitDocument:
    """Signature (release role threshold), expiry and fields of ``kit.json``'s bytes."""
    doc = _json_object(data, KIT_METADATA, MAX_KIT_METADATA_BYTES)
    keys, threshold = _role_keys(root, RELEASE_ROLE)
    try:
        payload = release_form(doc["signed"])
    except ValueError:
        raise KitError("kit.json holds values that cannot be signed as JSON") from None
    _check_signatures(payload, doc["signatures"], keys, threshold,
                      "kit.json (release role of the trust root)")
    kit = parse_kit(doc["signed"])
    if kit.expires <= (now or datetime.now(timezone.utc)):
        raise KitError(f"kit {kit.version} expired at {kit.expires:%Y-%m-%dT%H:%M:%SZ}; "
                       "build a new one")
    return kit


def kit_id(kit: KitDocument, kit_json: bytes) -> str:
    """Directory name of an installed agent: its version and the kit metadata's digest."""
    return f"{kit.version}-{hashlib.sha256(kit_json).hexdigest()[:12]}"


def _read_regular(path: Path, limit: int) -> bytes:
    """A regular file of the kit, never through a link, at most ``limit`` bytes (then the
    JSON reader refuses it): ``kit.json`` linked to ``/dev/zero`` or a FIFO is never read
    (this script is standalone, so it has its own small copy of ``airlock.files``'s rule)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KitError(f"{path.name} is a symbolic link; a kit holds only files") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KitError(f"{path.name} is not a regular file; a kit holds only files")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def check_tree(kit_dir: Path, kit: KitDocument) -> None:
    """Every file under ``kit_dir`` is listed with its length and sha256, and nothing else is there."""
    seen: set[str] = set()
    count = 0
    for dirpath, dirnames, filenames in os.walk(kit_dir):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(kit_dir).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            count += 1
            if count > MAX_KIT_FILES + 1:
                raise KitError(f"kit holds more than {MAX_KIT_FILES} files")
            if not stat.S_ISREG(mode):
                raise KitError(f"kit file {rel!r} is not a regular file")
            if rel == KIT_METADATA:
                continue
            listed = kit.files.get(rel)
            if listed is None:
                raise KitError(f"kit file {rel!r} is not listed in kit.json")
            size = full.stat().st_size
            if size != listed[0]:
                raise KitError(f"kit file {rel!r} is {size} bytes; kit.json says {listed[0]}")
            if _sha256_file(full) != listed[1]:
                raise KitError(f"kit file {rel!r} does not match its sha256 in kit.json")
            seen.add(rel)
    missing = sorted(set(kit.files) - seen)
    if missing:
        raise KitError(f"kit lacks {missing[0]}" + (f" and {len(missing) - 1} more"
                                                   if len(missing) > 1 else ""))


def host_platform() -> str:
    """This machine as a kit platform: ``linux/amd64``, ``linux/arm64`` (or what it is)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}/{arch}"


def check_host(kit: KitDocument) -> None:
    """The kit's platform, Python and glibc fit the machine and interpreter running this."""
    here = host_platform()
    if kit.platform != here:
        raise KitError(f"kit is for {kit.platform}; this device is {here}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if kit.python != python:
        raise KitError(f"kit is for Python {kit.python}; this python3 is {python} "
                       "(build the kit with --python " + python + ")")
    libc, version = platform.libc_ver()
    if libc != "glibc":
        raise KitError("kit needs glibc; this device's C library is not glibc")
    if tuple(int(p) for p in version.split(".")[:2]) < tuple(int(p) for p in kit.glibc.split(".")):
        raise KitError(f"kit needs glibc {kit.glibc}; this device has {version}")


def check_newer(kit: KitDocument, installed: Iterable[str]) -> None:
    """Anti-rollback: refuse a kit older than any version in ``installed``."""
    for version in installed:
        if version_key(kit.version) < version_key(version):
            raise KitError(f"kit {kit.version} is older than agent {version} already accepted "
                           "on this device; carry a newer kit")


def installed_versions(prefix: Path | None, root: Path | None) -> list[str]:
    """The agent installed under ``prefix`` and the newest the device at ``root`` accepted."""
    found: list[str] = []
    unreadable = (OSError, ValueError, KeyError, TypeError)  # nothing there: nothing to refuse
    if prefix is not None:
        with contextlib.suppress(*unreadable):
            signed = json.loads((prefix / "current" / MARKER).read_bytes())["signed"]
            found.append(str(signed[KIT_SECTION]["version"]))
    if root is not None:
        with contextlib.suppress(*unreadable):
            found.append(str(json.loads((root / AGENT_RECORD).read_bytes())["version"]))
    return found


def check_venv(prefix: Path) -> list[str]:
    """Files of every distribution installed in the venv at ``prefix`` that differ from RECORD.

    Run with that venv's interpreter (``VENV/bin/python -I verify_kit.py
    --check-venv VENV``): a second ``install.sh`` uses it to decide whether an
    installed agent is whole or must be rebuilt.
    """
    from importlib import metadata

    problems: list[str] = []
    if Path(sys.prefix).resolve() != prefix.resolve():
        return [f"run with {prefix}/bin/python, not {sys.executable}"]
    dists = [d for d in metadata.distributions()
             if Path(str(d.locate_file(""))).resolve().is_relative_to(prefix.resolve())]
    if not any(d.metadata["Name"] == "airlock-edge" for d in dists):
        problems.append("airlock-edge is not installed")
    for dist in dists:
        for f in dist.files or []:
            if f.hash is None or f.hash.mode != "sha256":
                continue
            path = Path(str(dist.locate_file(f)))
            try:
                digest = hashlib.sha256(path.read_bytes()).digest()
            except OSError:
                problems.append(f"{f} is missing")
                continue
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != f.hash.value:
                problems.append(f"{f} differs from its RECORD")
    return problems


# -- the command line ----------------------------------------------------------------------


def _arg(argv: list[str], flag: str) -> str | None:
    if flag not in argv:
        return None
    at = argv.index(flag)
    if at + 1 >= len(argv):
        raise KitUsageError(f"{flag} needs a value")
    value = argv[at + 1]
    del argv[at : at + 2]
    return value


def _verify(argv: list[str]) -> str:
    trust_arg, prefix_arg, root_arg = (_arg(argv, f) for f in ("--trust", "--prefix", "--root"))
    if len(argv) != 1:
        raise KitUsageError("usage: verify_kit.py KIT_DIR [--trust root.json] [--prefix DIR] "
                            "[--root DIR] | --check-venv VENV")
    kit_dir = Path(argv[0])
    device_root = Path(root_arg) / "trust" / "root.json" if root_arg else None
    if device_root is not None and device_root.is_file():
        # The device's own, possibly rotated, root wins; --trust may only rotate it.
        root_file = _device_or_rotation(device_root, Path(trust_arg) if trust_arg else None)
    elif trust_arg:
        root_file = Path(trust_arg)
    else:
        raise KitUsageError("give --trust root.json (the trust root your devices are "
                            "provisioned with)")
    try:
        root_bytes = root_file.read_bytes()
        kit_json = _read_regular(kit_dir / KIT_METADATA, MAX_KIT_METADATA_BYTES)
    except OSError as e:
        raise KitUsageError(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        root = load_root(root_bytes)
        kit = verify_kit_json(kit_json, root)
        check_tree(kit_dir, kit)
        check_host(kit)
        check_newer(kit, installed_versions(Path(prefix_arg) if prefix_arg else None,
                                            Path(root_arg) if root_arg else None))
    except KitError as e:
        raise type(e)(f"{e} (trust root {root_file})") from None
    return f"{kit_id(kit, kit_json)} {kit.installer} {kit.requirements}"


def _device_or_rotation(device_root: Path, given: Path | None) -> Path:
    """The trust root to check the kit with when ROOT already trusts ``device_root``.

    ``given`` (``--trust``) is either that same root, or its rotation: the next
    version, signed by the threshold of the old root role and of its own.
    """
    if given is None:
        return device_root
    try:
        old_bytes, new_bytes = device_root.read_bytes(), given.read_bytes()
    except OSError as e:
        raise KitUsageError(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        old = load_root(old_bytes)
    except KitError as e:
        raise type(e)(f"{e} (trust root {device_root})") from None
    try:
        new = load_root(new_bytes)
    except KitError as e:
        raise type(e)(f"{e} (trust root {given})") from None
    if new == old:
        return device_root
    version = old.get("version")
    refused = (f"{device_root.parent.parent} already trusts another root ({device_root}, "
               f"version {version}); --trust {given} is not a rotation of it")
    if not isinstance(version, int) or new.get("version") != version + 1:
        raise KitPreconditionError(f"{refused} (its version is {new.get('version')}, not the "
                                   "next); give the device's own root, or the next root it signed")
    keys, threshold = _role_keys(old, "root")
    doc = _json_object(new_bytes, "trust root", MAX_KIT_METADATA_BYTES * 16)
    try:
        _check_signatures(canonical_form(new), doc["signatures"], keys, threshold,
                          "the new trust root (old root's keys)")
    except KitError as e:
        raise KitPreconditionError(f"{refused}: {e}") from None
    return given


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["--check-venv"] and len(args) == 2:
            problems = check_venv(Path(args[1]))
            for p in problems[:5]:
                print(f"verify_kit: {p}", file=sys.stderr)
            return 1 if problems else 0
        print(_verify(args))
        return 0
    except KitError as e:
        print(f"verify_kit: refused: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
