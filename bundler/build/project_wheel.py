"""The project's own wheel, written from its pyproject.toml without a build backend.

``airlock agent-kit`` puts the agent into a kit as a wheel; this writes that
wheel reproducibly (entries sorted and dated ``SOURCE_DATE_EPOCH``) and reads
back what the kit's lock needs from it::

    wheel = project_wheel(Path("."), work)           # work/dist/airlock_edge-0.2.0-py3-none-any.whl
    version, requires = wheel_metadata(wheel)        # "0.2.0", the agent's Requires-Dist lines
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from airlock.errors import UsageError

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, from PyPI ([bundler] extra)
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["WHEEL_EPOCH", "project_wheel", "wheel_metadata"]

WHEEL_EPOCH = 315532800  # 1980-01-01, the oldest time a zip can hold


def project_wheel(project: Path, out: Path) -> Path:
    """The project's own wheel (pure Python, ``py3-none-any``), written from its pyproject.toml.

    No build backend runs: ``pip wheel`` would fetch setuptools from the index
    (unpinned by the lock, on every kit) and take seconds to set up. The wheel
    holds what setuptools puts in for this project: the packages that
    ``[tool.setuptools.packages.find] include`` finds (directories with an
    ``__init__.py``, searched as setuptools does), their ``.py`` files and
    ``package-data``, the metadata and console scripts of ``[project]``.
    Entries are sorted and dated ``SOURCE_DATE_EPOCH``, so the same sources
    give the same bytes. A pyproject this does not understand is a usage error.
    """
    try:
        doc = tomllib.loads((project / "pyproject.toml").read_text())
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read {project / 'pyproject.toml'}: {e}") from None
    meta, tool = doc.get("project", {}), doc.get("tool", {}).get("setuptools", {})
    unsupported = sorted(set(meta) - _PROJECT_FIELDS) + (["dynamic"] if meta.get("dynamic") else [])
    find = tool.get("packages", {}).get("find", {})
    if find.get("where", ["."]) != ["."] or find.get("exclude") or find.get("namespaces"):
        unsupported.append("tool.setuptools.packages.find (only 'include' is read)")
    if unsupported or not isinstance(meta.get("name"), str) or not isinstance(
            meta.get("version"), str):
        raise UsageError(f"{project / 'pyproject.toml'}: the agent's wheel is built from "
                         "name, version, dependencies, optional-dependencies and scripts; "
                         + (f"cannot build with {', '.join(unsupported)}" if unsupported
                            else "name and version must be given as text"))
    name, version = meta["name"], meta["version"]
    dist = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    files: dict[str, bytes] = {}
    for package in _packages(project, find.get("include", ["*"])):
        pdir = project / package.replace(".", "/")
        for f in sorted(pdir.glob("*.py")):
            files[f.relative_to(project).as_posix()] = f.read_bytes()
        for pattern in tool.get("package-data", {}).get(package, []):
            for f in sorted(pdir.glob(pattern)):
                if f.is_file() and "__pycache__" not in f.parts:
                    files[f.relative_to(project).as_posix()] = f.read_bytes()
    if not files:
        raise UsageError(f"{project}: no packages to put in the agent's wheel")
    info = f"{dist}.dist-info"
    files[f"{info}/METADATA"] = _metadata(project, meta).encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: airlock agent-kit\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    scripts = meta.get("scripts", {})
    if scripts:
        files[f"{info}/entry_points.txt"] = ("[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in sorted(scripts.items()))).encode()
    files[f"{info}/top_level.txt"] = "".join(
        f"{t}\n" for t in sorted({p.split("/")[0] for p in files if "/" in p} - {info})).encode()
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in sorted(files.items())) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", str(WHEEL_EPOCH)))
    stamp = time.gmtime(max(epoch, WHEEL_EPOCH))[:6]
    (out / "dist").mkdir(parents=True, exist_ok=True)
    wheel = out / "dist" / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        # RECORD last, the rest sorted: the order pip and auditors expect, fixed for every build.
        for path in [*sorted(p for p in files if p != f"{info}/RECORD"), f"{info}/RECORD"]:
            entry = zipfile.ZipInfo(path, date_time=stamp)  # type: ignore[arg-type]
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, files[path])
    return wheel


#: The ``[project]`` fields the agent's wheel is built from (anything else is refused).
_PROJECT_FIELDS = {"name", "version", "description", "readme", "requires-python", "license",
                   "dependencies", "optional-dependencies", "scripts"}


def _packages(project: Path, include: list[str]) -> list[str]:
    """Packages under ``project`` matching ``include``, found as setuptools' ``find`` does:
    a directory with an ``__init__.py`` and no ``.`` in its name, searched only inside packages."""
    found, todo = [], [project]
    while todo:
        here = todo.pop()
        for d in sorted(here.iterdir()):
            if not d.is_dir() or "." in d.name or not (d / "__init__.py").is_file():
                continue
            package = d.relative_to(project).as_posix().replace("/", ".")
            if any(fnmatch.fnmatchcase(package, pattern) for pattern in include):
                found.append(package)
            todo.append(d)
    return sorted(found)


def _metadata(project: Path, meta: dict[str, Any]) -> str:
    """Core metadata 2.1 of the agent's wheel: what pip reads to install it and its extras."""
    lines = ["Metadata-Version: 2.1", f"Name: {meta['name']}", f"Version: {meta['version']}"]
    if meta.get("description"):
        lines.append(f"Summary: {meta['description']}")
    license = meta.get("license")
    if isinstance(license, dict) and license.get("text"):
        lines.append(f"License: {license['text']}")
    if meta.get("requires-python"):
        lines.append(f"Requires-Python: {meta['requires-python']}")
    readme = meta.get("readme")
    body = ""
    if isinstance(readme, str) and (project / readme).is_file():
        body = (project / readme).read_text()
        if readme.endswith(".md"):
            lines.append("Description-Content-Type: text/markdown")
    lines += [f"Requires-Dist: {r.strip()}" for r in meta.get("dependencies", [])]
    for extra, reqs in meta.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for r in reqs:
            req, _, marker = r.strip().partition(";")
            marker = f"({marker.strip()}) and " if marker.strip() else ""
            lines.append(f'Requires-Dist: {req.strip()}; {marker}extra == "{extra}"')
    return "\n".join(lines) + "\n\n" + body


def wheel_metadata(wheel: Path) -> tuple[str, list[str]]:
    """Version and the Requires-Dist lines of a built wheel that the agent installs."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    version = re.search(r"^Version: (.+)$", text, re.M)
    # What the agent needs: its own requirements and those of its [agent] extra.
    requires = sorted(r for r in re.findall(r"^Requires-Dist: (.+)$", text, re.M)
                      if "extra ==" not in r or 'extra == "agent"' in r)
    if version is None:
        raise UsageError(f"{wheel.name} has no version in its metadata")
    return version.group(1).strip(), requires
