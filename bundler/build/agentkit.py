"""``airlock agent-kit``: the agent and every dependency, as wheels for one device, in one signed tar.

A device behind an air gap cannot ``pip install``. A kit carries everything
it would download, for the device's CPU and Python, plus the installer::

    target = KitTarget("linux/arm64", python="3.11")
    result = build_agent_kit(target, [load_signer(Path("release.key"))],
                             Path("airlock-agent-kit-0.2.0-linux-arm64-py3.11.tar"))
    result.size, result.wheels           # bytes, [(name, version, file)]

The steps:

1. the project (``--project``, default the checkout this code runs from) is
   written into its wheel from its ``pyproject.toml`` (``bundler.build.project_wheel``),
   without a build backend
   or the index (entries sorted and dated ``SOURCE_DATE_EPOCH``, so the same
   source gives the same wheel);
2. the dependencies are taken from the **lock** (``packaging/agent-kit-lock.json``):
   exact versions and sha256 of every wheel, per platform, Python and glibc.
   ``--update-lock`` resolves a target again with ``pip install --dry-run
   --report --only-binary=:all: --platform …`` and records the result; a
   dependency without a binary wheel for the target is a build error naming it;
3. the locked wheels are fetched with ``pip download --require-hashes`` into
   the wheel cache (``~/.cache/airlock/wheels``, ``$XDG_CACHE_HOME/airlock/wheels``); a wheel already there with
   the right sha256 is not fetched again, so a warm cache needs no network;
4. pip checks, offline, that the kit's wheels install for the target exactly
   as the device will (``--no-index --require-hashes``);
5. ``kit.json`` lists every file with its sha256, is signed by the release
   keys (``keys.kit``), and the tar is written reproducibly and renamed into
   place.

Only this module talks to pip on the host; progress goes to the caller's
``progress(phase, bytes, total)`` callback.

A release carries kits for its devices to update themselves with
(``agent: {kit: …}`` in the spec, or ``airlock build --agent-kit KIT``):
:func:`add_kit_artifact` checks each kit whole and adds it to the bundle's
OCI layout as an artifact, the way models are, so ``oras`` and ``skopeo``
see it too::

    entry = add_kit_artifact(contents, Path("airlock-agent-kit-0.2.0-linux-amd64-py3.11.tar"))
    entry.version, entry.platform, entry.blob          # a keys.release.AgentKitEntry
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer

from airlock.console import Progress, no_progress
from airlock.errors import AirlockError, FormatError, PreconditionError, UsageError
from airlock.files import PartialFile
from airlock.format.kitarchive import KitMember, KitReader, write_kit
from airlock.format.layout_check import FileInfo
from airlock.format.oci import (
    ANNOTATION_REF_NAME,
    ANNOTATION_TITLE,
    OCI_EMPTY,
    OCI_MANIFEST,
    hash_file,
    oci_manifest,
)
from bundler.build.artifacts import LayoutBuilder
from bundler.build.cache import default_cache_dir
from bundler.build.output import check_output
from bundler.build.project_wheel import WHEEL_EPOCH, project_wheel, wheel_metadata
from keys import kitverify
from keys.kit import kit_metadata, read_kit
from keys.metadata import ReleaseSerializer
from keys.release import AgentKitEntry
from keys.signed_fields import is_plain_name

__all__ = [
    "DEFAULT_GLIBC",
    "KIT_ARTIFACT_TYPE",
    "KIT_LAYER_TYPE",
    "KitResult",
    "KitTarget",
    "LockedWheel",
    "add_kit_artifact",
    "build_agent_kit",
    "check_pip",
    "default_project",
    "is_kit_file",
]

KIT_ARTIFACT_TYPE = "application/vnd.airlock.agent-kit.v1"
KIT_LAYER_TYPE = "application/vnd.airlock.agent-kit.v1.tar"
#: Wheels for glibc 2.28 (RHEL 8, Debian 10 and later) unless --glibc says otherwise.
DEFAULT_GLIBC = "2.28"
_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# Legacy manylinux names and the glibc they stand for (PEP 600).
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_TEMPLATE = Path(__file__).with_name("kit_template")
_PROJECT = "airlock-edge"
PIP_FLOOR = (23, 0)  # check_pip: --dry-run --report with per-file hashes


@dataclass(frozen=True)
class KitTarget:
    """The device a kit is for: platform, Python (major.minor), oldest glibc, extra requirements."""

    platform: str
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    glibc: str = DEFAULT_GLIBC
    extras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.platform not in _ARCH:
            raise UsageError(f"--platform {self.platform!r}: kits exist for "
                             + ", ".join(_ARCH))
        if not re.fullmatch(r"3\.[0-9]{1,2}", self.python):
            raise UsageError(f"--python {self.python!r} must look like 3.11")
        if not re.fullmatch(r"2\.[0-9]{1,3}", self.glibc):
            raise UsageError(f"--glibc {self.glibc!r} must look like 2.28")

    @property
    def key(self) -> str:
        """The lock's name for this target, e.g. ``linux/arm64 py3.11 glibc2.28``."""
        extras = f" +{','.join(sorted(self.extras))}" if self.extras else ""
        return f"{self.platform} py{self.python} glibc{self.glibc}{extras}"

    @property
    def slug(self) -> str:
        return f"{self.platform.replace('/', '-')}-py{self.python}"

    def platform_tags(self) -> list[str]:
        """Every manylinux tag a device of this glibc accepts, newest first."""
        arch = _ARCH[self.platform]
        newest = int(self.glibc.split(".")[1])
        oldest = 5 if arch == "x86_64" else 17
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, oldest - 1, -1)]
        tags += [f"{name}_{arch}" for name, (_, minor) in _LEGACY.items()
                 if oldest <= minor <= newest]
        return tags

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python,
                "--implementation", "cp", "--abi", "cp" + self.python.replace(".", "")]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args

    def accepts(self, wheel_file: str) -> bool:
        """Whether a wheel's tags (from its file name) fit this target."""
        tags = wheel_file[:-len(".whl")].split("-")[-3:]
        if len(tags) != 3:
            return False
        pythons, abis, platforms = (t.split(".") for t in tags)
        ours = set(self.platform_tags()) | {"any"}
        cp = "cp" + self.python.replace(".", "")
        python_ok = any(p in (cp, "py3", f"py{self.python.replace('.', '')}") or
                        (p.startswith("cp3") and abis == ["abi3"] and int(p[3:]) <= int(cp[3:]))
                        for p in pythons)
        return python_ok and any(p in ours for p in platforms)


@dataclass(frozen=True)
class LockedWheel:
    name: str
    version: str
    file: str
    sha256: str

    def requirement(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


@dataclass
class KitResult:
    path: Path
    size: int
    version: str
    target: KitTarget
    sha256: str
    kit_id: str
    wheels: list[LockedWheel] = field(default_factory=list)
    lock_updated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kit": str(self.path), "size": self.size, "version": self.version,
                "platform": self.target.platform, "python": self.target.python,
                "glibc": self.target.glibc, "sha256": self.sha256, "kit_id": self.kit_id,
                "wheels": [w.file for w in self.wheels], "lock_updated": self.lock_updated}


def default_project() -> Path:
    """The checkout this code runs from, when it is one (pyproject.toml naming airlock-edge)."""
    here = Path(__file__).resolve().parents[2]
    pyproject = here / "pyproject.toml"
    if pyproject.is_file() and f'name = "{_PROJECT}"' in pyproject.read_text():
        return here
    raise UsageError("this airlock is not run from a source checkout; give --project DIR "
                     "(a checkout of airlock-edge)")


def _dry_target(work: Path) -> list[str]:
    """``--target``: pip before 23.1 takes --platform/--abi only with it (nothing is written
    on a --dry-run); later pips take it as well."""
    return ["--target", str(work / "dry-run-target")]


def check_pip() -> None:
    """This Python's pip can resolve for another device, or one line saying which pip is needed.

    ``--report`` came in pip 22.2 and its per-file ``hashes`` in 23.0;
    Debian 12's venvs get 23.0.1, Ubuntu 22.04's 22.0.2.
    """
    floor = ".".join(map(str, PIP_FLOOR))
    try:
        found = importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        raise PreconditionError(f"airlock agent-kit needs pip {floor} or newer in {sys.executable}"
                                f"; it has none ({sys.executable} -m ensurepip)") from None
    numbers = re.match(r"(\d+)\.(\d+)", found)
    if numbers is None or (int(numbers[1]), int(numbers[2])) < PIP_FLOOR:
        raise PreconditionError(f"airlock agent-kit needs pip {floor} or newer; {sys.executable} "
                                f"has pip {found} ({sys.executable} -m pip install "
                                f"'pip>={floor}')")


def _pip(args: Sequence[str], what: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    # The caller's PYTHONPATH has no business in a wheel build or a resolution.
    clean = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                       env=clean, check=False, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        missing = re.search(r"No matching distribution found for ([^\s;]+)", p.stderr)
        if missing:
            raise UsageError(f"{what}: no binary wheel of {missing.group(1)} for this target; "
                             "pick another --python or --glibc, or drop the requirement")
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")] or \
            p.stderr.strip().splitlines() or [f"pip exited {p.returncode}"]
        raise UsageError(f"{what}: {lines[-1][:300]}")
    return p


class _Lock:
    """``agent-kit-lock.json``: per target, the exact wheels that make a kit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except ValueError as e:
            raise UsageError(f"{path} is not valid JSON: {e}") from None
        self.doc.setdefault("targets", {})

    def get(self, target: KitTarget, requires: list[str]) -> list[LockedWheel] | None:
        entry = self.doc["targets"].get(target.key)
        if entry is None:
            return None
        if entry.get("requires") != requires:
            raise UsageError(f"{self.path}: the agent's dependencies changed since "
                             f"'{target.key}' was locked; run again with --update-lock")
        return [LockedWheel(**w) for w in entry["wheels"]]

    def put(self, target: KitTarget, requires: list[str], wheels: list[LockedWheel]) -> None:
        self.doc["targets"][target.key] = {
            "platform": target.platform, "python": target.python, "glibc": target.glibc,
            "extras": list(target.extras), "requires": requires,
            "wheels": [w.__dict__ for w in sorted(wheels, key=lambda w: w.name)]}
        self.doc["about"] = ("Exact wheels of every agent kit target; made by "
                             "'airlock agent-kit --update-lock'. Edit by running it, not by hand.")
        self.doc["targets"] = dict(sorted(self.doc["targets"].items()))
        with PartialFile(self.path, parents=True) as partial:
            partial.file.write((json.dumps(self.doc, indent=2, sort_keys=True) + "\n").encode())
            partial.publish()


def _require_target_python(target: KitTarget) -> None:
    """Resolve a target only on its own Python: pip's ``--python-version`` picks wheels for it,
    but evaluates dependency markers (``typing-extensions; python_version < "3.11"``) for the
    interpreter that runs pip, so a 3.10 lock resolved on 3.11 lacked a wheel every 3.10
    device needs, and its install.sh failed on site."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if target.python != running:
        raise UsageError(f"resolving the lock of '{target.key}' needs Python {target.python} "
                         f"itself (this is {running}): pip judges dependency markers by the "
                         f"Python that runs it; run python{target.python} -m bundler agent-kit "
                         "--update-lock …, or build from the lock without --update-lock")


def _resolve(target: KitTarget, project_wheel: Path, index: list[str],
             work: Path) -> list[LockedWheel]:
    """What pip picks for the target: every wheel but the project's, with its sha256."""
    report = work / "report.json"
    _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
          *_dry_target(work), *target.pip_args(), *index, f"{project_wheel}[agent]", "pip", *target.extras],
         f"resolving {target.key}")
    wheels = []
    for item in json.loads(report.read_text())["install"]:
        meta, info = item["metadata"], item["download_info"]
        if meta["name"] == _PROJECT:
            continue
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        file = info["url"].rsplit("/", 1)[-1].split("#")[0]
        if not sha or not file.endswith(".whl"):
            raise UsageError(f"resolving {target.key}: {meta['name']} has no wheel with a sha256")
        wheels.append(LockedWheel(meta["name"], meta["version"], file, sha))
    return wheels


def _fetch(target: KitTarget, wheels: list[LockedWheel], cache: Path, index: list[str],
           work: Path) -> None:
    """Make every locked wheel present in ``cache`` with its sha256; fetch only what is not."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [w for w in wheels
               if not (cache / w.file).is_file() or hash_file(cache / w.file)[0] != w.sha256]
    if missing:
        reqs = work / "fetch.txt"
        reqs.write_text("".join(w.requirement() + "\n" for w in missing))
        _pip(["download", "--no-deps", "--quiet", "--require-hashes", "-r", str(reqs),
              "-d", str(cache), *target.pip_args(), *index], f"downloading {target.key}")
    for w in wheels:
        path = cache / w.file
        if not path.is_file() or hash_file(path)[0] != w.sha256:
            raise UsageError(f"downloading {target.key}: {w.file} did not arrive with "
                             f"sha256 {w.sha256[:16]}…; the index serves other bytes than "
                             "the lock says")


def build_agent_kit(
    target: KitTarget,
    signers: Sequence[Signer],
    output: Path | None,
    *,
    expires: datetime,
    project: Path | None = None,
    lock: Path | None = None,
    update_lock: bool = False,
    cache: Path | None = None,
    index: Sequence[str] = (),
    progress: Progress = no_progress,
    force: bool = False,
    reads: Sequence[Path] = (),
) -> KitResult:
    """Build, sign and write the agent kit for ``target``; ``output`` defaults to its usual name.

    ``index`` is pip's own options for where packages come from (``--index-url
    URL``, ``--find-links DIR``), passed through. ``output`` never replaces one
    of ``reads`` (the signing keys), the lock, or a file that is not an agent
    kit unless ``force`` (``bundler.build.output``, as ``airlock build``).
    """
    if not signers:
        raise UsageError("give at least one --key (a release key) to sign the kit")
    check_pip()
    project = project or default_project()
    lock_file = _Lock(lock or project / "packaging" / "agent-kit-lock.json")
    cache = (cache or default_cache_dir()) / "wheels"
    if not update_lock and target.key not in lock_file.doc["targets"]:
        raise UsageError(f"{lock_file.path} has no '{target.key}'; run again with "
                         "--update-lock to resolve it (needs the index)")
    with tempfile.TemporaryDirectory(prefix="airlock-kit-") as tmp:
        work = Path(tmp)
        progress("building", 0, 1)
        wheel = project_wheel(project, work)
        version, requires = wheel_metadata(wheel)
        try:
            kitverify.version_key(version)
        except kitverify.KitError:
            raise UsageError(f"the agent's version is {version!r}; a kit needs a final release "
                             "version like 0.2.0 so devices can order kits") from None
        output = output or Path(f"airlock-agent-kit-{version}-{target.slug}.tar")
        check_output(output, [*reads, lock_file.path], force=force, kind="an agent kit",
                     is_ours=is_kit_file)
        wheels = None if update_lock else lock_file.get(target, requires)
        if wheels is None:
            _require_target_python(target)
            wheels = _resolve(target, wheel, list(index), work)
            lock_file.put(target, requires, wheels)
        foreign = [w.file for w in wheels if not target.accepts(w.file)]
        if foreign:
            raise UsageError(f"the lock's '{target.key}' holds {foreign[0]}, which does not fit "
                             "the target; run again with --update-lock")
        _fetch(target, wheels, cache, list(index), work)
        installer = next((w for w in wheels if w.name.lower() == "pip"), None)
        if installer is None:
            raise UsageError(f"the lock's '{target.key}' has no pip wheel to install with; "
                             "run again with --update-lock")
        members = _members(target, wheels, cache, wheel, version)
        unit = project / "packaging" / "airlock-agent.service"
        if unit.is_file():  # the observe work's unit; install.sh installs it when systemd is there
            members.append(KitMember("systemd/airlock-agent.service", unit.read_bytes()))
        _check_installable(target, members, work)
        result = _write(target, signers, output, members, version, expires, installer,
                        progress)
        result.wheels = sorted(wheels, key=lambda w: w.name)
        result.lock_updated = update_lock
        return result


def _members(target: KitTarget, wheels: list[LockedWheel], cache: Path, project_wheel: Path,
             version: str) -> list[KitMember]:
    reqs = [f"{_PROJECT}[agent]=={version} --hash=sha256:{hash_file(project_wheel)[0]}"]
    reqs += [w.requirement() for w in sorted(wheels, key=lambda w: w.name) if w.name != "pip"]
    readme = (_TEMPLATE / "README.md").read_text()
    for key, value in (("VERSION", version), ("PLATFORM", target.platform),
                       ("PYTHON", target.python), ("GLIBC", target.glibc)):
        readme = readme.replace(f"@{key}@", value)
    members = [
        KitMember("install.sh", (_TEMPLATE / "install.sh").read_bytes(), executable=True),
        KitMember("verify_kit.py", Path(kitverify.__file__).read_bytes(), executable=True),
        KitMember("README.md", readme.encode()),
        KitMember("requirements.txt", ("# Installed offline by install.sh with pip "
                                       "--no-index --require-hashes.\n"
                                       + "".join(r + "\n" for r in reqs)).encode()),
        KitMember(f"wheels/{project_wheel.name}", project_wheel),
        *(KitMember(f"wheels/{w.file}", cache / w.file) for w in wheels),
    ]
    return members


def _check_installable(target: KitTarget, members: list[KitMember], work: Path) -> None:
    """Resolve the kit's requirements against its own wheels only, as the device will."""
    wheels = work / "kit-wheels"
    wheels.mkdir()
    for m in members:
        if m.path.startswith("wheels/"):
            dest = wheels / Path(m.path).name
            if isinstance(m.source, bytes):
                dest.write_bytes(m.source)
            elif _same_fs(m.source, wheels):
                os.link(m.source, dest)
            else:
                shutil.copy(m.source, dest)
    reqs = work / "requirements.txt"
    listed = next(m.source for m in members if m.path == "requirements.txt")
    assert isinstance(listed, bytes)  # made in memory by _members
    reqs.write_bytes(listed)
    _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--no-index", "--isolated",
          "--find-links", str(wheels), "--require-hashes", "-r", str(reqs), *_dry_target(work),
          *target.pip_args()],
         f"checking that the kit installs offline on {target.key}")


def _same_fs(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return a.stat().st_dev == b.stat().st_dev
    return False


def is_kit_file(path: Path) -> bool:
    """Whether ``path`` begins as an agent kit: its top directory, then its ``kit.json``."""
    with path.open("rb") as f:
        try:
            KitReader(f).head()
        except FormatError:
            return False
    return True


def _write(target: KitTarget, signers: Sequence[Signer], output: Path,
           members: list[KitMember], version: str, expires: datetime, installer: LockedWheel,
           progress: Progress) -> KitResult:
    files = {}
    for m in members:
        if isinstance(m.source, bytes):
            files[m.path] = FileInfo(len(m.source), hashlib.sha256(m.source).hexdigest())
        else:
            digest, size = hash_file(m.source)
            files[m.path] = FileInfo(size, digest)
    md = kit_metadata(version=version, platform=target.platform, python=target.python,
                      glibc=target.glibc, files=files, requirements="requirements.txt",
                      installer=f"wheels/{installer.file}", expires=expires)
    for signer in signers:
        md.sign(signer, append=True, signed_serializer=ReleaseSerializer())
    kit_json = md.to_bytes()
    top = f"airlock-agent-kit-{version}-{target.slug}"
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", str(WHEEL_EPOCH)))
    total = sum(m.size for m in members)
    progress("writing", 0, total)
    with PartialFile(output, parents=True) as partial:
        write_kit(partial.file, top, kit_json, members, mtime=mtime)
        partial.publish()
    progress("writing", total, total)
    doc = kitverify.parse_kit(json.loads(kit_json)["signed"])
    return KitResult(output, output.stat().st_size, version, target, hash_file(output)[0],
                     kitverify.kit_id(doc, kit_json))


def add_kit_artifact(contents: LayoutBuilder, kit: Path) -> AgentKitEntry:
    """Check a kit file whole (every member against its kit.json) and add it to ``contents``.

    The signature of ``kit.json`` is the device's to check against its trust
    root; here the kit must be well formed, complete and unaltered since it
    was listed, so a device never receives a kit it would refuse for that.
    """
    if not is_plain_name(kit.name):
        raise UsageError(f"agent kit file name {kit.name!r} must be letters, digits, '.', '_' "
                         "or '-'; rename it")
    try:
        with kit.open("rb") as f:
            reader = KitReader(f)
            _, kit_json = reader.head()
            doc = read_kit(kit_json)
            reader.extract({p: FileInfo(n, h) for p, (n, h) in doc.files.items()}, None)
    except OSError as e:
        raise UsageError(f"cannot read agent kit {kit}: {e.strerror}") from None
    except AirlockError as e:
        raise UsageError(f"agent kit {kit}: {e}") from None
    layer = contents.add_file(KIT_LAYER_TYPE, kit, annotations={ANNOTATION_TITLE: kit.name})
    config = contents.add_bytes(OCI_EMPTY, b"{}")
    tag = f"{doc.version}-{doc.platform.replace('/', '-')}-py{doc.python}"
    manifest = contents.add_bytes(
        OCI_MANIFEST,
        oci_manifest(config, [layer], artifact_type=KIT_ARTIFACT_TYPE),
        annotations={ANNOTATION_REF_NAME: f"agent-kits/{tag}"},
        artifact_type=KIT_ARTIFACT_TYPE,
    )
    contents.manifests.append(manifest)
    return AgentKitEntry(blob=layer.digest, manifest=manifest.digest, file_name=kit.name,
                         size=layer.size, version=doc.version, platform=doc.platform,
                         python=doc.python)
