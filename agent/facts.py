"""The device's facts: what kind of device this is, for the model variants a release offers.

Probed at ``init`` and again at every agent start (``serve``, ``install``),
written to ``ROOT/facts.json``; a device initialised before facts existed
gets the file on its first start. The variant selectors of ``keys.variants``
are matched against :func:`effective`::

    record = refresh(layout)             # probe, merge the operator's words, write facts.json
    record["probed"]["arch"]             # "amd64" (OCI words; x86_64/aarch64 are aliases)
    record["labels"]                     # {"site": "north"}: init --label / config --label
    record["stated"]                     # {"cuda_capability": "8.7"}: config --fact
    effective(record)["providers"]       # ["CPUExecutionProvider", ...]

Probed: ``arch``, ``os``, ``cpu_features`` (the ones runtimes choose kernels
by: AVX2, AVX-512, NEON ...), ``ram_mb``, ``cpus``, ``python``,
``onnxruntime`` (its version) and ``providers`` (the execution providers it
really has, asked in a child so the agent itself never loads ONNX Runtime).
What the probe cannot see (a GPU's CUDA compute capability, an NPU) the
operator states with ``config --fact NAME=VALUE``; a stated fact wins over a
probed one of the same name, which is also how a test plays another class of
device.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.layout import Layout
from airlock.errors import UsageError
from airlock.files import read_json, write_atomic
from keys.variants import normalize_arch

__all__ = ["effective", "facts_line", "load_facts", "parse_pairs", "probe", "refresh"]

#: CPU flags worth a selector; /proc/cpuinfo lists dozens more nobody picks a model by.
_CPU_FEATURES = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                 "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                 "amx_int8", "amx_bf16", "avx_vnni", "neon", "asimd", "asimdhp", "asimddp",
                 "sve", "sve2", "i8mm", "bf16", "fphp")
_PAIR_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")
_PAIR_VALUE = re.compile(r"^[A-Za-z0-9_.:/+-]{1,128}\Z")
_ORT_PROBE = ("import json, onnxruntime as o; "
              "print(json.dumps([o.__version__, list(o.get_available_providers())]))")


def _cpu_features() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")[:200_000]
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if "asimd" in flags:
        flags.add("neon")  # arm64 reports Advanced SIMD as asimd; people say NEON
    return sorted(f for f in flags if f in _CPU_FEATURES)


def _ram_mb() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024))
    except (ValueError, OSError):
        return None


def _onnxruntime(root: Path) -> tuple[str | None, list[str]]:
    """ONNX Runtime's version and providers, asked in a contained child (bounded, no env)."""
    from airlock.spawn import child_env, run_contained

    done = run_contained([sys.executable, "-I", "-c", _ORT_PROBE], cwd=root,
                         env=child_env(), timeout_s=60)
    if not done.ok:
        return None, []
    try:
        version, providers = json.loads(done.last_line())
    except (ValueError, TypeError):
        return None, []
    return str(version), [str(p) for p in providers]


def probe(root: Path) -> dict[str, Any]:
    """What this machine is, as far as it can tell by itself."""
    version, providers = _onnxruntime(root)
    return {
        "arch": normalize_arch(platform.machine() or "unknown"),
        "os": platform.system().lower(),
        "cpu_features": _cpu_features(),
        "ram_mb": _ram_mb(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": version,
        "providers": providers,
    }


def effective(record: dict[str, Any]) -> dict[str, Any]:
    """The facts a variant selector sees: probed, overlaid by stated facts, with the labels
    (``keys.variants.effective``, which the host applies to an inventory's facts too)."""
    from keys.variants import effective as of_record

    return of_record(record)


def refresh(layout: Layout, labels: dict[str, str] | None = None,
            stated: dict[str, str] | None = None) -> dict[str, Any]:
    """Probe again and write ``facts.json`` with the operator's labels and stated facts
    (``agent.yaml``'s, unless given); the record written."""
    if labels is None or stated is None:
        config = layout.load_config()
        labels = config.labels if labels is None else labels
        stated = config.facts if stated is None else stated
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "probed": probe(layout.root), "labels": dict(sorted(labels.items())),
              "stated": dict(sorted(stated.items()))}
    write_atomic(layout.facts, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def load_facts(layout: Layout) -> dict[str, Any] | None:
    """``facts.json`` as last written, or None when it is absent or damaged."""
    try:
        raw = read_json(layout.facts)
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    """``--label k=v`` / ``--fact k=v`` as a mapping; ``k=`` (empty) forgets k (value "")."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not _PAIR_KEY.match(key):
            raise UsageError(f"{option} {pair!r} must be NAME=VALUE (NAME: lower-case letters, "
                             "digits, '_', '.', '-')")
        if value and not _PAIR_VALUE.match(value):
            raise UsageError(f"{option} {pair!r}: the value may hold letters, digits and "
                             "'_.:/+-' only, at most 128 characters")
        if option == "--fact" and key == "labels":
            raise UsageError("--fact labels=... is --label NAME=VALUE")
        out[key] = value
    return out


def facts_line(record: dict[str, Any] | None) -> str:
    """One line for people: ``amd64, linux, 15861 MB, avx2 avx512f, onnxruntime 1.18.0
    (CPUExecutionProvider), labels npu=hailo, stated cuda_capability=8.7``."""
    if not record:
        return "not probed yet (the agent's next start probes them)"
    f = effective(record)
    parts = [str(f.get("arch")), str(f.get("os")), f"{f.get('ram_mb')} MB RAM",
             f"Python {f.get('python')}"]
    if f.get("cpu_features"):
        parts.append(" ".join(f["cpu_features"]))
    parts.append(f"onnxruntime {f.get('onnxruntime') or '(none)'} ("
                 + (", ".join(f.get("providers") or []) or "no providers") + ")")
    if record.get("labels"):
        parts.append("labels " + " ".join(f"{k}={v}" for k, v in record["labels"].items()))
    if record.get("stated"):
        parts.append("stated " + " ".join(f"{k}={v}" for k, v in record["stated"].items()))
    return ", ".join(parts)
