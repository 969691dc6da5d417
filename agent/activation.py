"""What install, rollback and check share: record a health check, switch and probe.

::

    report = health_check(layout, journal, release, replacing="vision-2")  # writes health.json
    tx = Transaction.begin(layout, "install", release.id)
    outcome = activate(layout, journal, tx, release, previous="vision-2")
    if not outcome.ok:            # links already restored, old hook re-run
        ...

The health check itself (ONNX Runtime in a child process) lives in
``agent.release_health``; it is imported lazily so that ``status`` and ``history``
work without loading onnxruntime. The check uses the device's ONNX Runtime
setup (``agent.yaml`` ``runtime``, see ``agent.runtime``). Relative
evaluation thresholds compare with the evaluation recorded in the
``health.json`` of the release being ``replacing`` (install); a re-check
(``check``, ``rollback``) compares with the baseline its own ``health.json``
recorded when it was installed, so the verdict does not drift.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agent.faults import crash_point
from agent.hooks import HookResult, run_post_switch, run_probe
from agent.journal import Journal
from agent.layout import Layout
from agent.switch import Transaction, point_links
from airlock.files import read_json, write_json

if TYPE_CHECKING:
    # Annotations only: keys.release loads python-tuf, which ``status`` and
    # ``rollback --help`` must not pay for (tests/test_startup.py).
    from airlock.quality.health import Baseline, HealthReport
    from keys.release import Release

__all__ = ["INSTALL_POINTS", "ROLLBACK_POINTS", "Activation", "activate", "health_check",
           "recorded_evaluations", "rerun_hook"]

INSTALL_POINTS = ("before-previous-update", "after-previous-update", "after-switch")
ROLLBACK_POINTS = ("rollback-before-switch", "mid-rollback", "rollback-after-switch")


def health_check(layout: Layout, journal: Journal, release: Release, *,
                 replacing: str | None = None, shadow: bool = False,
                 judge_shadow: bool = True) -> HealthReport:
    """Run the model health check on an installed release and record the result.

    ``replacing``: the release an install replaces (its recorded evaluation is
    the baseline of relative thresholds, and the model a ``shadow:`` compares
    with); None re-uses the baselines this release recorded when it was
    installed. ``shadow`` (an install, a promotion): run the models' shadow
    checks against ``replacing``; ``judge_shadow=False`` (a staged challenger)
    records the comparison without refusing on it.
    """
    from agent.challenger import shadow_asks
    from agent.release_health import check_release

    rdir = layout.release_dir(release.id)
    journal.append("health-started", release=release.id)
    crash_point("mid-health-check")
    if replacing is not None:
        baselines = recorded_evaluations(layout, replacing)
        why = f"{replacing} recorded no evaluation of this model"
    else:
        baselines = recorded_evaluations(layout, release.id, own_baseline=True)
        why = "no release was running to compare with when it was installed"
    # Only an install compares with what runs: a re-check has nothing new to shadow.
    shadows, unshadowed = (shadow_asks(layout, release, running=replacing,
                                       enforce=judge_shadow) if shadow else ({}, []))
    start = time.monotonic()
    report = check_release(rdir, release, runtime=layout.load_config().runtime,
                           baselines=baselines, no_baseline=why, shadows=shadows)
    seconds = round(time.monotonic() - start, 3)
    result = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "ok": report.ok,
              "reason": report.reason, "seconds": seconds, "report": report.to_dict()}
    if unshadowed:
        result["shadow_notes"] = unshadowed
    write_json(rdir / "health.json", result)
    journal.append("health-result", release=release.id, ok=report.ok, reason=report.reason,
                   seconds=seconds, report=report.to_dict())
    return report


def recorded_evaluations(layout: Layout, release_id: str, *,
                         own_baseline: bool = False) -> dict[str, Baseline]:
    """Per model, the evaluation recorded in ``releases/ID/health.json`` (or the baseline it used).

    A record that is missing, damaged or from a check that failed gives no
    baseline: a relative threshold is then not applied, and the result says so.
    """
    from airlock.quality.health import Baseline

    try:
        record = read_json(layout.release_dir(release_id) / "health.json")
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or (not own_baseline and record.get("ok") is not True):
        return {}
    report = record.get("report")
    models = report.get("models") if isinstance(report, dict) else None
    out: dict[str, Baseline] = {}
    for m in models if isinstance(models, list) else []:
        ev = m.get("evaluation") if isinstance(m, dict) else None
        source = release_id
        if own_baseline and isinstance(ev, dict):
            ev = ev.get("baseline")
            source = str(ev.get("release")) if isinstance(ev, dict) else source
        if not isinstance(ev, dict) or not isinstance(m.get("name"), str):
            continue
        data, labels, samples, metrics = (ev.get(k) for k in ("data", "labels", "samples",
                                                              "metrics"))
        if (isinstance(data, str) and isinstance(labels, str) and type(samples) is int
                and isinstance(metrics, dict)):
            out[m["name"]] = Baseline(source, data, labels, samples, {
                str(k): float(v) for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)})
    return out


@dataclass
class Activation:
    ok: bool
    reason: str
    hook: HookResult | None = None
    probe: HookResult | None = None
    switch_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "switch_s": self.switch_s,
                "hook": self.hook.to_dict() if self.hook else None,
                "probe": self.probe.to_dict() if self.probe else None}


def rerun_hook(layout: Layout, journal: Journal, release_id: str | None) -> None:
    """Re-run the post-switch hook of the release that is active again (best effort)."""
    if release_id is None:
        return
    try:
        release = layout.load_release(release_id)
    except Exception as e:  # a damaged old release must not stop a rollback
        journal.append("hook-rerun", release=release_id, ok=False, reason=str(e))
        return
    if release.hooks.post_switch:
        result = run_post_switch(layout, release)
        journal.append("hook-rerun", release=release_id, ok=result.ok, reason=result.reason,
                       output_tail=result.output_tail)


def activate(layout: Layout, journal: Journal, tx: Transaction, release: Release, *,
             previous: str | None, points: tuple[str, str, str] = INSTALL_POINTS) -> Activation:
    """Point ``current`` at ``release``, run its hook and probe; undo on failure."""
    start = time.monotonic()
    tx.step("switching")
    point_links(layout, current=release.id, previous=previous, points=(points[0], points[1]))
    switch_s = round(time.monotonic() - start, 4)
    crash_point(points[2])
    journal.append("switched", op=tx.op, release=release.id, previous=previous)
    tx.step("probing")
    hook = run_post_switch(layout, release)
    if release.hooks.post_switch:
        journal.append("hook-ran", release=release.id, ok=hook.ok, reason=hook.reason,
                       seconds=hook.seconds, output_tail=hook.output_tail)
    crash_point("after-post-switch-hook")
    probe = run_probe(layout, release) if hook.ok else None
    if probe is not None and release.hooks.probe:
        journal.append("probe-ran", release=release.id, ok=probe.ok, reason=probe.reason,
                       seconds=probe.seconds, output_tail=probe.output_tail)
    failed = hook if not hook.ok else probe if probe is not None and not probe.ok else None
    if failed is None:
        return Activation(True, "ok", hook, probe, switch_s)
    reason = (f"post_switch hook failed: {failed.reason}" if failed is hook
              else failed.reason)
    journal.append("probe-failed", release=release.id, reason=reason)
    crash_point("mid-auto-rollback")
    tx.restore()
    rerun_hook(layout, journal, tx.restore_current)
    journal.append("rolled-back", release=release.id, to=tx.restore_current, reason=reason)
    return Activation(False, reason, hook, probe, switch_s)
