"""The device's Prometheus metrics, read from ROOT at each scrape.

``serve`` answers ``/metrics`` with the exposition ``prometheus_client``
makes from its own registry (never the global default one)::

    observed = Observed(layout)                 # what serve saw: drift, drop outcomes, checks
    registry = metrics_registry(layout, observed)
    body = generate_latest(registry)            # text format 0.0.4

Nothing is cached that a manual ``airlock-agent install`` could make stale:
releases, health results, store and disk are read at scrape time, and the
install/rollback/rejection counters come from the journal (``agent.observe.tally``),
so they count what any command did and survive a restart. Names follow the
Prometheus conventions (base units: seconds, bytes; ``_total`` counters):

    airlock_agent_info{version,device_id,ring}            1
    airlock_release_info{slot,release,name,version,sequence}   1 (slot: active, previous)
    airlock_release_sequence{slot}
    airlock_release_health_ok{release}                    1 ok, 0 failed (active release)
    airlock_health_check_duration_seconds{release}        last check, all models
    airlock_model_health_ok{release,model}
    airlock_model_health_last_check_timestamp_seconds{release,model}
    airlock_model_latency_p95_seconds{release,model}      from the last check
    airlock_model_peak_memory_bytes{release,model}        of the check's child process
    airlock_model_metric{release,model,metric}            evaluation metrics of the last check
    airlock_model_variant{release,model,variant}          1: the variant of the model this device runs
    airlock_model_input_violations{release,model,input,rule}  input-contract violations in the
                                                          newest dropped samples
    airlock_model_input_rows{release,model}               sample rows they were counted in
    airlock_installs_total{result}                        installed, already_active, failed,
                                                          rejected, refused
    airlock_rollbacks_total{result,trigger}               ok|failed x manual|check|install
    airlock_bundles_rejected_total{reason}                signature, expired, rollback, policy,
                                                          digest, format, other
    airlock_drop_bundles_total{outcome}                   drop-folder outcomes since serve started
                                                          (a flags bundle: flags_applied)
    airlock_scheduled_checks_total{result}                ok, failed
    airlock_store_bytes, airlock_store_blobs
    airlock_disk_free_bytes, airlock_disk_total_bytes     of the filesystem holding ROOT (statvfs)
    airlock_model_drift_psi{release,model,input}          worst feature of the input
    airlock_model_drift_warning{release,model}            1 above health.drift_warn
    airlock_model_drift_threshold{release,model}
    airlock_model_drift_rows{release,model}               recent rows compared
    airlock_agent_busy                                    1 while a command holds the lock
    airlock_hold_deadline_seconds{release,previous}       a held install's deadline (unix time)
    airlock_shadow_agreement{release,against,model}       shadow check: share of device samples on
                                                          which the model agrees with ``against``
                                                          (the staged challenger's last run, and
                                                          the active release's at its install)
    airlock_shadow_latency_ratio{release,against,model}   its p95 over ``against``'s, same samples
    airlock_time_floor_timestamp_seconds                  the newest signed time seen (unix time)
    airlock_clock_behind_floor_seconds                    how far the clock is behind it (0: not)
    airlock_clock_state{state}                            1 for ok|behind|ahead|corrected|no-floor
    process_*                                             serve's own CPU and memory
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from agent.layout import Layout
from agent.lock import lock_holder
from agent.observe.tally import REJECT_REASONS, JournalTally
from agent.self.identity import agent_version
from agent.store import ContentStore
from agent.switch import read_link
from airlock.files import read_json

__all__ = ["DROP_OUTCOMES", "INSTALL_RESULTS", "Observed", "metrics_registry", "sample_names"]

INSTALL_RESULTS = ("installed", "already_active", "failed", "rejected", "refused")
DROP_OUTCOMES = ("installed", "flags_applied", "already_active", "skipped", "failed", "rejected", "refused",
                 "incomplete", "error")
_MiB = 1024 * 1024


@dataclass
class Observed:
    """What ``serve`` saw that ROOT does not record: updated by its loop, read by scrapes."""

    drift: dict[str, Any] = field(default_factory=lambda: {"release": None, "models": {}})
    inputs: dict[str, Any] = field(default_factory=lambda: {"release": None, "models": {}})
    drops: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)


class _AgentCollector(Collector):
    def __init__(self, layout: Layout, observed: Observed) -> None:
        self.layout, self.observed = layout, observed
        self.tally = JournalTally(layout.journal)
        self._lock = threading.Lock()  # scrapes may overlap; the tally reads incrementally

    def collect(self) -> Iterator[Metric]:
        layout = self.layout
        config = layout.load_config()
        info = InfoMetricFamily("airlock_agent", "The agent on this device.")
        info.add_metric([], {"version": agent_version(), "device_id": config.device_id,
                             "ring": config.ring or ""})
        yield info
        busy = GaugeMetricFamily("airlock_agent_busy",
                                 "1 while an agent command holds the lock on ROOT.")
        busy.add_metric([], 1.0 if lock_holder(layout.lock) else 0.0)
        yield busy
        yield from self._hold()
        yield from self._clock()
        yield from self._releases()
        yield from self._counters()
        yield from self._storage()
        yield from self._drift()
        yield from self._inputs()
        yield from self._shadow()

    def _hold(self) -> Iterator[Metric]:
        from agent.hold import pending_hold

        hold = pending_hold(self.layout, serving=True)
        deadline = GaugeMetricFamily(
            "airlock_hold_deadline_seconds",
            "Unix time at which the held release goes back to the previous one unless "
            "'airlock-agent commit' keeps it; absent when nothing is held.",
            labels=["release", "previous"])
        if hold is not None:
            deadline.add_metric([hold["release"], hold["previous"] or ""], hold["deadline_unix"])
        yield deadline

    def _clock(self) -> Iterator[Metric]:
        """The clock against the time floor (agent.timefloor): a reset clock is seen from afar."""
        from datetime import datetime, timezone

        from agent.timefloor import judge_now
        from airlock.errors import AirlockError

        try:
            clock = judge_now(self.layout).to_dict()
        except AirlockError:
            return
        state = GaugeMetricFamily("airlock_clock_state",
                                  "1 for the state of the clock against the time floor: ok, "
                                  "behind, ahead, corrected or no-floor.", labels=["state"])
        state.add_metric([clock["state"]], 1.0)
        yield state
        behind = GaugeMetricFamily("airlock_clock_behind_floor_seconds",
                                   "Seconds the clock reads behind the newest signed time seen "
                                   "(a clock reset); expiry is judged at the floor then.")
        behind.add_metric([], float(clock["behind_s"]))
        yield behind
        if clock["floor"]:
            floor = GaugeMetricFamily("airlock_time_floor_timestamp_seconds",
                                      "The newest signed time this device has seen (unix time).")
            when = datetime.strptime(clock["floor"], "%Y-%m-%dT%H:%M:%SZ")
            floor.add_metric([], when.replace(tzinfo=timezone.utc).timestamp())
            yield floor

    def _releases(self) -> Iterator[Metric]:
        layout = self.layout
        rinfo = GaugeMetricFamily("airlock_release_info", "Installed release in a slot.",
                                  labels=["slot", "release", "name", "version", "sequence"])
        seq = GaugeMetricFamily("airlock_release_sequence",
                                "Sequence of the release in a slot.", labels=["slot"])
        ok = GaugeMetricFamily("airlock_release_health_ok",
                               "Last health check of the active release passed (1) or not (0).",
                               labels=["release"])
        dur = GaugeMetricFamily("airlock_health_check_duration_seconds",
                                "Duration of the last health check of the active release.",
                                labels=["release"])
        m_ok = GaugeMetricFamily("airlock_model_health_ok",
                                 "Model passed its last health check (1) or not (0).",
                                 labels=["release", "model"])
        m_time = GaugeMetricFamily("airlock_model_health_last_check_timestamp_seconds",
                                   "When the model was last health-checked (Unix time).",
                                   labels=["release", "model"])
        m_p95 = GaugeMetricFamily("airlock_model_latency_p95_seconds",
                                  "p95 inference latency in the last health check.",
                                  labels=["release", "model"])
        m_mem = GaugeMetricFamily("airlock_model_peak_memory_bytes",
                                  "Peak memory of the last health check's child process.",
                                  labels=["release", "model"])
        variant = GaugeMetricFamily("airlock_model_variant",
                                    "1 for the variant of each model the active release runs "
                                    "on this device (models with variants only).",
                                    labels=["release", "model", "variant"])
        m_metric = GaugeMetricFamily("airlock_model_metric",
                                     "Evaluation metric of the model on its labelled set in the "
                                     "last health check.", labels=["release", "model", "metric"])
        for slot in ("active", "previous"):
            rid = read_link(layout, "current" if slot == "active" else "previous")
            if rid is None:
                continue
            try:
                release = layout.load_release(rid)
            except Exception:
                continue
            rinfo.add_metric([slot, rid, release.name, release.version, str(release.sequence)], 1)
            seq.add_metric([slot], release.sequence)
            if slot != "active":
                continue
            for model, chosen in release.variants().items():
                variant.add_metric([rid, model, chosen], 1)
            health = _read_health(layout.release_dir(rid) / "health.json")
            if health is None:
                continue
            ok.add_metric([rid], 1.0 if health.get("ok") else 0.0)
            if isinstance(health.get("seconds"), int | float):
                dur.add_metric([rid], float(health["seconds"]))
            when = _timestamp(health.get("time"))
            for m in (health.get("report") or {}).get("models") or []:
                if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                    continue
                labels = [rid, m["name"]]
                m_ok.add_metric(labels, 1.0 if m.get("ok") else 0.0)
                if when is not None:
                    m_time.add_metric(labels, when)
                if isinstance(m.get("p95_ms"), int | float):
                    m_p95.add_metric(labels, float(m["p95_ms"]) / 1000)
                if isinstance(m.get("peak_rss_mb"), int | float):
                    m_mem.add_metric(labels, float(m["peak_rss_mb"]) * _MiB)
                ev = m.get("evaluation")
                values = ev.get("metrics") if isinstance(ev, dict) else None
                for name, value in sorted((values if isinstance(values, dict) else {}).items()):
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        m_metric.add_metric([*labels, str(name)], float(value))
        yield from (rinfo, seq, ok, dur, m_ok, m_time, m_p95, m_mem, m_metric, variant)

    def _counters(self) -> Iterator[Metric]:
        with self._lock:
            self.tally.update()
            installs = dict(self.tally.installs)
            rejected = dict(self.tally.rejected)
            rollbacks = dict(self.tally.rollbacks)
        c = CounterMetricFamily("airlock_installs", "Install attempts by result (journal).",
                                labels=["result"])
        for result in INSTALL_RESULTS:
            c.add_metric([result], installs.get(result, 0))
        yield c
        c = CounterMetricFamily("airlock_rollbacks", "Rollbacks by result and trigger (journal).",
                                labels=["result", "trigger"])
        for result in ("ok", "failed"):
            for trigger in ("manual", "check", "install"):
                c.add_metric([result, trigger], rollbacks.get((result, trigger), 0))
        yield c
        c = CounterMetricFamily("airlock_bundles_rejected",
                                "Bundles rejected (nothing installed) by reason (journal).",
                                labels=["reason"])
        for reason in (*REJECT_REASONS.values(), "other"):
            c.add_metric([reason], rejected.get(reason, 0))
        yield c
        drops = dict(self.observed.drops)
        c = CounterMetricFamily("airlock_drop_bundles",
                                "Drop-folder bundles handled since serve started, by outcome.",
                                labels=["outcome"])
        for outcome in DROP_OUTCOMES:
            c.add_metric([outcome], drops.get(outcome, 0))
        yield c
        checks = dict(self.observed.checks)
        c = CounterMetricFamily("airlock_scheduled_checks",
                                "Scheduled re-checks of the active release since serve started.",
                                labels=["result"])
        for result in ("ok", "failed"):
            c.add_metric([result], checks.get(result, 0))
        yield c

    def _storage(self) -> Iterator[Metric]:
        blobs, size = ContentStore(self.layout).usage()
        yield GaugeMetricFamily("airlock_store_bytes", "Bytes in the content store.", value=size)
        yield GaugeMetricFamily("airlock_store_blobs", "Blobs in the content store.", value=blobs)
        disk = shutil.disk_usage(self.layout.root)
        yield GaugeMetricFamily("airlock_disk_free_bytes",
                                "Free bytes on the filesystem holding ROOT.", value=disk.free)
        yield GaugeMetricFamily("airlock_disk_total_bytes",
                                "Size of the filesystem holding ROOT.", value=disk.total)

    def _drift(self) -> Iterator[Metric]:
        drift = self.observed.drift
        rid = drift.get("release") or ""
        psi = GaugeMetricFamily("airlock_model_drift_psi",
                                "Population stability index of recent inputs against the "
                                "reference (worst feature of the input).",
                                labels=["release", "model", "input"])
        warn = GaugeMetricFamily("airlock_model_drift_warning",
                                 "1 when the model's drift is above its threshold.",
                                 labels=["release", "model"])
        thr = GaugeMetricFamily("airlock_model_drift_threshold",
                                "PSI above which the model's drift is a warning.",
                                labels=["release", "model"])
        rows = GaugeMetricFamily("airlock_model_drift_rows",
                                 "Recent input rows the drift was computed over.",
                                 labels=["release", "model"])
        for model, d in sorted((drift.get("models") or {}).items()):
            if not isinstance(d, dict):
                continue
            for name, i in sorted((d.get("inputs") or {}).items()):
                psi.add_metric([rid, model, name], float(i["psi"]))
            warn.add_metric([rid, model], 1.0 if d.get("warn") else 0.0)
            if isinstance(d.get("threshold"), int | float):
                thr.add_metric([rid, model], float(d["threshold"]))
            rows.add_metric([rid, model], float(d.get("rows") or 0))
        yield from (psi, warn, thr, rows)


    def _shadow(self) -> Iterator[Metric]:
        """The staged challenger's last shadow run, and the active release's at its install."""
        from agent.challenger import summary

        agree = GaugeMetricFamily("airlock_shadow_agreement",
                                  "Share of the device's samples on which the model agrees with "
                                  "the model it was compared with (shadow check).",
                                  labels=["release", "against", "model"])
        ratio = GaugeMetricFamily("airlock_shadow_latency_ratio",
                                  "p95 latency of the model over that of the model it was "
                                  "compared with, on the same samples.",
                                  labels=["release", "against", "model"])
        runs: list[tuple[str, dict[str, Any]]] = []
        staged = summary(self.layout)
        if staged is not None and isinstance(staged.get("last"), dict):
            runs.append((staged["release"], staged["last"].get("models") or {}))
        rid = read_link(self.layout, "current")
        health = _read_health(self.layout.release_dir(rid) / "health.json") if rid else None
        if rid and health is not None:
            runs.append((rid, {m["name"]: m["shadow"]
                               for m in (health.get("report") or {}).get("models") or []
                               if isinstance(m, dict) and isinstance(m.get("shadow"), dict)
                               and isinstance(m.get("name"), str)}))
        for release, models in runs:
            for model, r in sorted(models.items()):
                labels = [release, str(r.get("running_release") or ""), model]
                for family, key in ((agree, "agreement"), (ratio, "latency_ratio")):
                    if isinstance(r.get(key), int | float):
                        family.add_metric(labels, float(r[key]))
        yield from (agree, ratio)

    def _inputs(self) -> Iterator[Metric]:
        inputs = self.observed.inputs
        rid = inputs.get("release") or ""
        bad = GaugeMetricFamily("airlock_model_input_violations",
                                "Values breaking the model's input contract in the newest "
                                "sample files the application dropped, per input and rule.",
                                labels=["release", "model", "input", "rule"])
        rows = GaugeMetricFamily("airlock_model_input_rows",
                                 "Sample rows the input contract was checked against.",
                                 labels=["release", "model"])
        for model, seen in sorted((inputs.get("models") or {}).items()):
            for name, rules in sorted((seen.get("violations") or {}).items()):
                for rule, count in sorted(rules.items()):
                    bad.add_metric([rid, model, name, rule], float(count))
            rows.add_metric([rid, model], float(seen.get("rows") or 0))
        yield from (bad, rows)


def _read_health(path: Any) -> dict[str, Any] | None:
    try:
        health = read_json(path)
    except (OSError, ValueError):
        return None
    return health if isinstance(health, dict) else None


def _timestamp(text: object) -> float | None:
    try:
        # "Z" by hand: Python 3.10 reads only offsets (3.11 reads both).
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def metrics_registry(layout: Layout, observed: Observed) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) with the agent's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AgentCollector(layout, observed))
    ProcessCollector(registry=registry)
    return registry


def sample_names(registry: CollectorRegistry) -> Iterable[str]:
    """Every sample name the registry exposes now (what a dashboard may query)."""
    for family in registry.collect():
        for s in family.samples:
            yield s.name
