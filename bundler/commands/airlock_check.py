"""``airlock check``: run the devices' health check on a spec's models, here; sign nothing.

    airlock check airlock.yaml --enforce-budgets

A failed check is exit 4 and still shows its report (merged into the JSON
object with ``--json``). ``health_lines`` is also how ``airlock build``
tells its check.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from airlock.console import fail_with, json_option, phase_bars
from airlock.durations import parse_duration
from airlock.errors import AirlockError
from bundler.commands.options import registry_options, spec_args

__all__ = ["DESCRIPTION", "EXAMPLES", "CheckResult", "add_arguments", "health_lines", "run"]

EXAMPLES = ("airlock check airlock.yaml --enforce-budgets",)
DESCRIPTION = (
    "Run the devices' health check on every model of a spec, on this host: the same\n"
    "isolated child, time and memory limits, golden comparison and evaluation on the\n"
    "labelled set (absolute thresholds; min_delta needs the device's running release)\n"
    "as airlock-agent. Latency and memory budgets and execution providers this host\n"
    "lacks are reported, and enforced with --enforce-budgets. Nothing is signed or\n"
    "written; 'airlock build' runs the same check before it signs.")


@dataclass(frozen=True)
class CheckResult:
    """The spec checked and the health report of its models (``HostReport.to_dict()``)."""

    spec: str
    name: str
    version: str
    enforce_budgets: bool
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "name": self.name, "version": self.version,
                "enforce_budgets": self.enforce_budgets, **self.report}

    def text(self) -> str:
        return "\n".join(health_lines(self.report))


def add_arguments(p: argparse.ArgumentParser) -> None:
    spec_args(p)
    json_option(p)


def run(a: argparse.Namespace) -> CheckResult:
    from bundler.build.assemble import assemble, refuse_unhealthy
    from bundler.build.host_check import check_models
    from bundler.build.host_config import apply_to_args
    from bundler.build.spec import load_spec

    apply_to_args(a, a.spec)
    spec = load_spec(a.spec, min_validity=parse_duration(a.min_validity))
    with phase_bars() as bars:
        assembled = assemble(spec, registry_options=registry_options(a), progress=bars)
        report = check_models(assembled.contents, assembled.models,
                              enforce_budgets=a.enforce_budgets, progress=bars)
    result = CheckResult(str(a.spec), spec.name, spec.version, a.enforce_budgets,
                         report.to_dict())
    try:
        refuse_unhealthy(report, "fix the model or its golden data before you build")
    except AirlockError as e:
        fail_with(result, e)
    return result


def health_lines(report: dict[str, Any] | None) -> list[str]:
    """The host check in a few lines: one per model, budgets missed but not enforced flagged."""
    if report is None:
        return ["health check: SKIPPED (--no-check): the models were not run on this host"]
    lines = []
    for m in report["models"]:
        figures = ", ".join(x for x in (
            f"p95 {m['p95_ms']:.3g} ms" if m["p95_ms"] is not None else "",
            f"peak {m['peak_rss_mb']:.0f} MiB" if m["peak_rss_mb"] is not None else "",
            f"{m['seconds']:.1f} s" if m.get("seconds") is not None else "") if x)
        verdict = "ok" if m["ok"] else f"FAILED: {m['reason']}"
        lines.append(f"health check of model {m['name']}: {verdict} ({figures})")
        ev = m.get("evaluation")
        if ev:
            checked = list(dict.fromkeys(c["metric"] for c in ev.get("checks") or []))
            values = ", ".join(f"{k} {ev['metrics'][k]:.4g}" for k in checked
                               if isinstance(ev["metrics"].get(k), int | float))
            lines.append(f"  evaluation: {values or 'no metric'} on {ev.get('samples')} "
                         f"samples ({ev.get('seconds', 0):.2f} s)")
        if m.get("over_budget"):
            lines.append(f"  over budget on this host (not enforced; --enforce-budgets): "
                         f"{m['over_budget']}")
        if m.get("note"):
            lines.append(f"  note: {m['note']}")
    return lines
