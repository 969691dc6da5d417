"""Drift on the device: recent inputs the application drops, against the bundle's reference.

A model whose spec names ``health.reference: ref.npz`` carries that sample in
the bundle; the agent links it as ``releases/ID/models/MODEL/reference.npz``.
The application (or an operator) drops recent inputs, same keys and layout,
into ``ROOT/samples/MODEL/`` — write to a temporary name and rename, so a
half-written file is never read::

    np.savez(tmp := samples / ".batch-0042.npz.tmp", x=batch)   # hidden names are skipped
    os.replace(tmp, samples / "batch-0042.npz")

Then::

    drift = release_drift(layout)      # the active release, every model with a reference
    drift["models"]["detector"]        # {"psi": 0.31, "warn": True, "threshold": 0.2,
                                       #  "inputs": {"x": {"psi": 0.31, "feature": "x[3]", ...}}}

The newest ``MAX_DRIFT_SAMPLE_FILES`` files and ``MAX_DRIFT_ROWS`` rows are
compared; fewer than ``MIN_ROWS`` rows give no score. The PSI, its binning and
how a multi-dimensional input is summarised are in ``airlock.quality.drift``. A score
above the model's ``health.drift_warn`` (default ``DEFAULT_WARN``) is a
warning: shown in ``status``, ``/metrics`` and reports, never a rollback.
:class:`DriftWatch` recomputes only when the sample files or the active
release change, for ``serve``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.layout import Layout
from agent.switch import read_link
from airlock.errors import AirlockError
from airlock.limits import MAX_DRIFT_ROWS, MAX_DRIFT_SAMPLE_FILES

if TYPE_CHECKING:
    # Annotations only: keys.release loads python-tuf (~0.1 s), which
    # ``airlock-agent status`` does not need (tests/test_startup.py).
    from keys.release import ModelEntry, Release

__all__ = ["DEFAULT_WARN", "MIN_ROWS", "DriftWatch", "Fingerprint", "fingerprint", "model_drift",
           "release_drift", "sample_files"]

#: PSI above which drift is a warning when the spec does not say (the usual rule of thumb).
DEFAULT_WARN = 0.2
#: Fewer recent rows than this give no score: PSI over ten bins is noise below it.
MIN_ROWS = 50

Fingerprint = tuple[tuple[str, int, int], ...]


def sample_files(folder: Path, limit: int = MAX_DRIFT_SAMPLE_FILES) -> list[os.DirEntry[str]]:
    """The newest sample files, newest first; hidden (still being written) names and links
    skipped. The input-contract count (``agent.observe.input_contract``) reads the same files."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name.endswith(".npz") and not e.name.startswith(".")
                       and e.is_file(follow_symlinks=False)]
    except OSError:
        return []
    entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
    return entries[:limit]


def fingerprint(layout: Layout, model: str) -> Fingerprint:
    """What the samples of ``model`` are now (names, sizes, mtimes): recompute when it changes."""
    return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                 for e in sample_files(layout.samples / model))


def model_drift(layout: Layout, release_id: str, model: ModelEntry) -> dict[str, Any] | None:
    """The drift of one model of an installed release; None when it has no reference."""
    from airlock.quality.drift import feature_psi, load_sample

    if model.health.reference is None:
        return None
    threshold = model.health.drift_warn if model.health.drift_warn is not None else DEFAULT_WARN
    out: dict[str, Any] = {"threshold": threshold, "psi": None, "warn": False, "files": 0,
                           "rows": 0, "inputs": {}, "note": None}
    files = sample_files(layout.samples / model.name)
    if not files:
        out["note"] = f"no samples in {layout.samples / model.name}"
        return out
    try:
        reference = load_sample(layout.release_dir(release_id) / "models" / model.name
                                / "reference.npz")
    except AirlockError as e:
        out["note"] = f"reference unreadable: {e}"
        return out

    import numpy as np

    recent: dict[str, list[Any]] = {k: [] for k in reference}
    rows, skipped = 0, []
    for entry in files:
        if rows >= MAX_DRIFT_ROWS:
            break
        try:
            sample = load_sample(Path(entry.path))
        except AirlockError as e:
            skipped.append(str(e))
            continue
        used = [k for k in sample if k in recent
                and sample[k].shape[1:] == reference[k].shape[1:] and sample[k].ndim > 0]
        if not used:
            skipped.append(f"{entry.name} has no input shaped like the reference")
            continue
        n = min(len(sample[k]) for k in used)
        for k in used:
            recent[k].append(sample[k][: MAX_DRIFT_ROWS - rows])
        rows += min(n, MAX_DRIFT_ROWS - rows)
        out["files"] += 1
    out["rows"] = rows
    notes = [f"{len(skipped)} sample file(s) skipped, e.g. {skipped[0][:160]}"] if skipped else []
    if rows < MIN_ROWS:
        notes.append(f"{rows} recent row(s); at least {MIN_ROWS} give a score")
    out["note"] = "; ".join(notes) or None
    if rows < MIN_ROWS:
        return out
    for name, parts in recent.items():
        if not parts:
            continue
        try:
            scores = feature_psi(name, reference[name], np.concatenate(parts))
        except AirlockError as e:
            out["note"] = str(e)
            continue
        if scores:
            worst = max(scores, key=lambda k: scores[k])
            out["inputs"][name] = {"psi": round(scores[worst], 6), "feature": worst,
                                   "features": {k: round(v, 6) for k, v in scores.items()}}
    if out["inputs"]:
        out["psi"] = max(i["psi"] for i in out["inputs"].values())
        out["warn"] = out["psi"] > threshold
    return out


def release_drift(layout: Layout, release_id: str | None = None) -> dict[str, Any]:
    """Drift of every model with a reference in ``release_id`` (default: the active release)."""
    rid = release_id or read_link(layout, "current")
    if rid is None:
        return {"release": None, "models": {}}
    try:
        release = layout.load_release(rid)
    except AirlockError as e:
        return {"release": rid, "models": {}, "error": str(e)}
    return {"release": rid, "models": _models(layout, rid, release, {})}


def _models(layout: Layout, rid: str, release: Release,
            cache: dict[tuple[str, str], tuple[Fingerprint, dict[str, Any] | None]]
            ) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for m in release.models:
        if m.health.reference is None:
            continue
        key, fp = (rid, m.name), fingerprint(layout, m.name)
        hit = cache.get(key)
        if hit is not None and hit[0] == fp:
            result = hit[1]
        else:
            try:
                result = model_drift(layout, rid, m)
            except Exception as e:  # a bad sample must never take the agent down
                result = {"psi": None, "warn": False, "note": f"drift not computed: {e}"}
            cache[key] = (fp, result)
        if result is not None:
            models[m.name] = result
    return models


class DriftWatch:
    """``release_drift`` for a long-running process: recomputed only when something changed."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._cache: dict[tuple[str, str], tuple[Fingerprint, dict[str, Any] | None]] = {}
        self.last: dict[str, Any] = {"release": None, "models": {}}

    def update(self) -> dict[str, Any]:
        rid = read_link(self.layout, "current")
        if rid is None:
            self.last = {"release": None, "models": {}}
            return self.last
        try:
            release = self.layout.load_release(rid)
        except AirlockError as e:
            self.last = {"release": rid, "models": {}, "error": str(e)}
            return self.last
        self._cache = {k: v for k, v in self._cache.items() if k[0] == rid}
        self.last = {"release": rid, "models": _models(self.layout, rid, release, self._cache)}
        return self.last
