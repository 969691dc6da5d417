"""The runtimes' mirror configuration pointing at a site relay: containerd, k3s, RKE2, Docker.

The registries mirrored are those the kept releases' images name
(``127.0.0.1:5000/app:1`` -> ``127.0.0.1:5000``). Each runtime reads a
different file; each is merged into what is there, never overwritten
blind (an overwritten ``daemon.json`` breaks Docker), and the old file is
kept beside it as ``NAME.airlock-backup``::

    plan = mirror_files("containerd", "http://relay:9401", ["127.0.0.1:5000"],
                        target=Path("/etc/containerd/certs.d"))
    for f in plan: f.path, f.text        # what would be written (the merge done already)
    write_files(plan)                    # backups first, then each file atomically

containerd: ``certs.d/HOST/hosts.toml`` (``config_path`` in its CRI config,
or ``ctr image pull --hosts-dir``); k3s and RKE2: ``registries.yaml``
(``mirrors``); Docker: ``daemon.json`` (``registry-mirrors``, which Docker
applies to Docker Hub only, and ``insecure-registries`` for an http relay).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airlock.errors import UsageError
from airlock.files import read_bounded, write_atomic

__all__ = ["DEFAULT_TARGETS", "RUNTIMES", "MirrorFile", "mirror_files", "write_files"]

RUNTIMES = ("containerd", "k3s", "rke2", "docker")
DEFAULT_TARGETS = {
    "containerd": Path("/etc/containerd/certs.d"),
    "k3s": Path("/etc/rancher/k3s/registries.yaml"),
    "rke2": Path("/etc/rancher/rke2/registries.yaml"),
    "docker": Path("/etc/docker/daemon.json"),
}
_MAX_CONFIG = 1024 * 1024


@dataclass(frozen=True)
class MirrorFile:
    path: Path
    text: str
    changed: bool  # False: the file already says this


def _existing(path: Path) -> str | None:
    try:
        return read_bounded(path, _MAX_CONFIG).decode()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path} to merge into it: {e}") from None


def _hosts_toml(relay: str, registry: str, old: str | None) -> str:
    block = (f'[host."{relay}"]\n  capabilities = ["pull", "resolve"]\n'
             + ("  skip_verify = false\n" if relay.startswith("https:") else ""))
    if old is None:
        scheme = "https" if registry != "docker.io" and not registry.startswith(
            ("127.", "localhost")) else "http"
        server = "https://registry-1.docker.io" if registry == "docker.io" else \
            f"{scheme}://{registry}"
        return f'# written by airlock-agent registry-config\nserver = "{server}"\n\n{block}'
    if f'[host."{relay}"]' in old:
        return old
    # Hosts are tried in the order written: the relay goes before the others.
    at = old.find("[host.")
    return old + "\n" + block if at < 0 else old[:at] + block + "\n" + old[at:]


def _registries_yaml(relay: str, registries: list[str], old: str | None) -> str:
    import yaml

    doc: Any = yaml.safe_load(old) if old else {}
    if not isinstance(doc, dict):
        raise UsageError("the existing registries.yaml is not a mapping; nothing was written")
    mirrors = doc.setdefault("mirrors", {})
    for registry in registries:
        entry = mirrors.setdefault(registry, {})
        endpoints = entry.setdefault("endpoint", [])
        if relay not in endpoints:
            endpoints.insert(0, relay)
    return str(yaml.safe_dump(doc, sort_keys=True))


def _daemon_json(relay: str, old: str | None) -> str:
    try:
        doc: Any = json.loads(old) if old else {}
    except ValueError:
        raise UsageError("the existing daemon.json is not JSON; nothing was written") from None
    if not isinstance(doc, dict):
        raise UsageError("the existing daemon.json is not an object; nothing was written")
    mirrors = doc.setdefault("registry-mirrors", [])
    if relay not in mirrors:
        mirrors.insert(0, relay)
    if relay.startswith("http:"):
        insecure = doc.setdefault("insecure-registries", [])
        host = urlsplit(relay).netloc
        if host not in insecure:
            insecure.append(host)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def mirror_files(runtime: str, relay: str, registries: list[str],
                 target: Path | None = None) -> list[MirrorFile]:
    """What ``runtime`` must read to pull ``registries`` through ``relay``, merged."""
    if runtime not in RUNTIMES:
        raise UsageError(f"--for {runtime!r}: one of {', '.join(RUNTIMES)}")
    if urlsplit(relay).scheme not in ("http", "https") or not urlsplit(relay).netloc:
        raise UsageError(f"--relay {relay!r} must be a URL, e.g. http://relay:9401")
    relay = relay.rstrip("/")
    target = target or DEFAULT_TARGETS[runtime]
    out = []
    if runtime == "containerd":
        for registry in registries:
            path = target / registry / "hosts.toml"
            old = _existing(path)
            text = _hosts_toml(relay, registry, old)
            out.append(MirrorFile(path, text, text != old))
        return out
    old = _existing(target)
    text = _daemon_json(relay, old) if runtime == "docker" else \
        _registries_yaml(relay, registries, old)
    return [MirrorFile(target, text, text != old)]


def write_files(files: list[MirrorFile]) -> list[str]:
    """Write the changed files, each old one kept as ``NAME.airlock-backup``; what was done."""
    done = []
    for f in files:
        if not f.changed:
            continue
        f.path.parent.mkdir(parents=True, exist_ok=True)
        if f.path.exists():
            backup = f.path.with_name(f.path.name + ".airlock-backup")
            shutil.copy2(f.path, backup)
            done.append(f"kept {backup}")
        write_atomic(f.path, f.text.encode())
        done.append(f"wrote {f.path}")
    return done
