"""The shadow check's inputs on a device: the running release's model and the newest samples.

A model whose signed spec carries ``shadow:`` is compared before the switch
with the model of the same name in the running release, on the newest
samples the application dropped in ``ROOT/samples/MODEL/`` (the drift
folder; ``agent.observe.sample_drift``)::

    asks = shadow_asks(layout, candidate_release, running="vision-5")
    asks["classifier"].files[:2]     # newest sample files first
    check_release(rdir, release, shadows=asks)

A model with no running counterpart (new in this release, or nothing runs
yet) has no ask: there is nothing to compare with, and the result says so.

A release installed with ``install --no-switch`` is the staged challenger
(``ROOT/challenger.json``): its shadow check is run and recorded but does not
refuse it; ``gc`` keeps it; ``status`` shows it with its runs;
``serve --shadow-every`` adds a run on fresh samples; ``promote`` switches
to it (``agent.promote``)::

    stage(layout, result)          # after a --no-switch install: the record, first run included
    staged(layout)                 # {"release": "vision-7", "against": "vision-5", "runs": [...]}
    add_run(layout, report)        # one more comparison (serve)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.layout import Layout
from agent.observe.sample_drift import sample_files
from airlock.errors import AirlockError
from airlock.files import read_json, write_json
from airlock.limits import MAX_SHADOW_SAMPLES
from airlock.quality.shadow_check import ShadowAsk

if TYPE_CHECKING:
    # Annotation only: ``status`` asks the challenger without reading a release
    # through keys.release's reader (tests/test_startup.py).
    from keys.release import Release

__all__ = ["MAX_RUNS", "add_run", "drop", "ready_to_promote", "rerun", "runs_of", "shadow_asks",
           "stage", "staged", "summary"]

#: Shadow runs a challenger record keeps (the newest): ``serve`` adds one per period.
MAX_RUNS = 48


def staged(layout: Layout) -> dict[str, Any] | None:
    """The staged challenger's record, or None (none, or a damaged record)."""
    try:
        raw = read_json(layout.challenger)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("release"), str):
        return None
    if not layout.release_dir(raw["release"]).is_dir():
        return None  # gone (an operator removed it): nothing is staged
    return raw


def runs_of(report: dict[str, Any]) -> dict[str, Any]:
    """One run: per model with a shadow result, its agreement, latency ratio and verdict."""
    out: dict[str, Any] = {}
    for m in report.get("models") or []:
        sh = m.get("shadow") if isinstance(m, dict) else None
        if isinstance(sh, dict):
            out[str(m.get("name"))] = {k: sh.get(k) for k in (
                "agreement", "latency_ratio", "samples", "verdict", "running_release",
                "min_agreement", "max_latency_ratio")}
    return {"time": _now(), "models": out}


def stage(layout: Layout, result: dict[str, Any]) -> dict[str, Any]:
    """Record the release a ``--no-switch`` install left staged, with its first shadow run."""
    record = {"release": result["release"], "against": result.get("active"),
              "staged_at": _now(), "runs": [runs_of(result.get("health") or {})]}
    write_json(layout.challenger, record)
    return record


def add_run(layout: Layout, report: dict[str, Any]) -> dict[str, Any] | None:
    """Append one comparison to the staged challenger's record (the newest MAX_RUNS kept)."""
    record = staged(layout)
    if record is None:
        return None
    runs = [r for r in record.get("runs") or [] if isinstance(r, dict)]
    record["runs"] = [*runs, runs_of(report)][-MAX_RUNS:]
    write_json(layout.challenger, record)
    return record


def summary(layout: Layout) -> dict[str, Any] | None:
    """The staged challenger for status, pages and reports: the record's head and its last run."""
    record = staged(layout)
    if record is None:
        return None
    runs = [r for r in record.get("runs") or [] if isinstance(r, dict)]
    return {"release": record["release"], "against": record.get("against"),
            "staged_at": record.get("staged_at"), "runs": len(runs),
            "last": runs[-1] if runs else None,
            "promote": "airlock-agent promote"}


def rerun(layout: Layout) -> dict[str, Any] | None:
    """``serve --shadow-every``: compare the staged challenger again on the newest samples.

    Only the models with ``shadow:`` run (goldens and latency in their child,
    the labelled set not again); the run is added to the record and journaled.
    None when nothing is staged or nothing runs to compare with.
    """
    from agent.journal import Journal
    from agent.release_health import check_release
    from agent.switch import read_link

    record = staged(layout)
    current = read_link(layout, "current")
    if record is None or current is None or record["release"] == current:
        return None
    release = layout.load_release(record["release"])
    asks, _ = shadow_asks(layout, release, running=current, enforce=False)
    if not asks:
        return None
    models = [m for m in release.models if m.name in asks]
    shadowed = replace(release, models=[replace(m, evaluation=None) for m in models])
    report = check_release(layout.release_dir(release.id), shadowed,
                           runtime=layout.load_config().runtime, shadows=asks).to_dict()
    run = runs_of(report)
    add_run(layout, report)
    Journal(layout.journal).append("shadow-run", release=release.id, against=current,
                                   ok=report["ok"], models=run["models"])
    return {"release": release.id, "against": current, **run}


def ready_to_promote(layout: Layout, runs: int) -> str | None:
    """Why the challenger may be promoted (its last ``runs`` runs all passed), or None."""
    record = staged(layout)
    history = [r for r in (record or {}).get("runs") or [] if isinstance(r, dict)]
    last = history[-runs:]
    if runs < 1 or len(last) < runs:
        return None
    for r in last:
        models = r.get("models") or {}
        if not models or any(m.get("verdict") != "passed" for m in models.values()):
            return None
    return (f"auto-promote: its last {runs} shadow run(s) all met the spec's min_agreement "
            "and max_latency_ratio")


def drop(layout: Layout) -> None:
    """Nothing is staged any more (promoted, or replaced)."""
    layout.challenger.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shadow_asks(layout: Layout, release: Release, *, running: str | None,
                enforce: bool = True) -> tuple[dict[str, ShadowAsk], list[str]]:
    """Per model with ``shadow:``, what to compare it with; and why some cannot be compared."""
    asks: dict[str, ShadowAsk] = {}
    unmatched: list[str] = []
    wanted = [m for m in release.models if m.shadow is not None]
    if not wanted:
        return asks, unmatched
    old = None
    if running is not None and running != release.id:
        try:
            old = layout.load_release(running)
        except AirlockError:
            old = None
    by_name = {m.name: m for m in old.models} if old is not None else {}
    for m in wanted:
        assert m.shadow is not None
        theirs = by_name.get(m.name)
        if theirs is None or old is None:
            unmatched.append(f"model '{m.name}': no running model to shadow "
                             f"({'nothing runs yet' if old is None else f'{old.id} has none'})")
            continue
        folder = layout.samples / m.name
        # One row per file at worst: as many files as samples asked, newest first.
        files = sample_files(folder, limit=min(m.shadow.samples, MAX_SHADOW_SAMPLES))
        asks[m.name] = ShadowAsk(
            m.shadow, layout.release_dir(old.id) / "models" / m.name / theirs.file_name,
            old.id, tuple(Path(e.path) for e in files), str(folder), enforce)
    return asks, unmatched
