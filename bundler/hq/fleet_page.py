"""The fleet report: one self-contained HTML file with the fleet table and plots over time.

``airlock report ingest … --html fleet.html`` writes it after taking reports in::

    html = fleet_html(Ledger("sqlite:///airlock-fleet/ledger.sqlite"))
    Path("fleet.html").write_text(html)

It reads every verified report of every enrolled device from the ledger
(``Ledger.reports``; a ``FleetRecords`` directory answers the same
questions) and draws:

* the fleet table (device, site, ring, release, health, last check, report
  age, rollbacks, drift), sortable by a click when JavaScript is on and in
  site and device order without it, and the reason of every failed check;
* release adoption per site: devices per release now, and over time (each
  device counted with the release its newest report at that moment named);
* health per model across devices over time: p95 latency and peak memory of
  every check the journals recorded (``health-result``), failed checks
  crossed, and evaluation metrics when checks ran an evaluation;
* drift per model over time (each report's PSI, with the threshold);
* rejected bundles by reason and rollbacks by trigger (the journals' counts),
  and the newest refusals, failures and rollbacks with their reasons.

Plots are hand-written SVG (``airlock.page.charts``), the same as the device's
status page: a few kilobytes per plot, text a screen reader and a search
can find, and no plotting library on either side (matplotlib's SVG embeds
every glyph as a path and would be a 40 MB dependency for six kinds of
chart). Everything a report says is escaped: reports come from devices and
carry journal text from sticks nobody vouched for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, Protocol

from airlock.page import charts
from airlock.page.webpage import (
    SORT_SCRIPT,
    Cell,
    esc,
    finite,
    obj_field,
    page,
    section,
    state_word,
    table,
)
from bundler.hq.ingest import age_text, parse_time

__all__ = ["FleetSource", "fleet_html"]



class FleetSource(Protocol):
    """What the page reads: the ledger (``bundler.hq.ledger.Ledger``) or a fleet directory."""

    @property
    def root(self) -> object: ...

    def devices(self) -> dict[str, dict[str, Any]]: ...

    def table(self, now: datetime | None = None) -> list[dict[str, Any]]: ...

    def reports(self, device: str) -> list[dict[str, Any]]: ...


_PROBLEM_EVENTS = {"rejected", "refused", "install-failed", "rolled-back", "rollback-failed",
                   "probe-failed", "drift-warning"}
_SHOWN_PROBLEMS = 25
# Charts two to a row on a laptop, one on a phone: drawn at the size they are shown.
_CARD_W = 460
Series = dict[str, list[tuple[datetime, float]]]




class _Fleet:
    """What every report of every device says, gathered once for the plots."""

    def __init__(self, records: FleetSource, now: datetime) -> None:
        self.now = now
        self.devices = records.devices()
        self.rows = records.table(now)
        self.bodies = {d: records.reports(d) for d in self.devices}
        self.events: dict[str, list[dict[str, Any]]] = {}
        for device, bodies in self.bodies.items():
            seen: dict[tuple[str, str, str], dict[str, Any]] = {}
            for body in bodies:  # reports overlap (a stick's report repeats the journal)
                entries = obj_field(body, "journal").get("entries")
                for e in entries if isinstance(entries, list) else []:
                    if isinstance(e, dict) and parse_time(e.get("time")) is not None:
                        seen[(str(e.get("time")), str(e.get("event")), str(e.get("release")))] = e
            self.events[device] = sorted(seen.values(), key=lambda e: str(e.get("time")))

    def site(self, device: str) -> str:
        return str(obj_field(self.devices, device).get("site") or "(no site)")

    # -- health over time ----------------------------------------------------
    def health(self) -> dict[str, dict[str, Any]]:
        """Per model: p95 and memory series per device, failed points, evaluation metrics."""
        out: dict[str, dict[str, Any]] = defaultdict(lambda: {
            "p95": defaultdict(list), "mem": defaultdict(list), "failed_p95": [],
            "failed_mem": [], "metrics": defaultdict(lambda: defaultdict(list))})
        for device in self.devices:
            checks: dict[str, tuple[datetime, dict[str, Any]]] = {}
            for e in self.events[device]:
                if e.get("event") == "health-result":
                    t = parse_time(e.get("time"))
                    if t is not None:
                        checks[t.isoformat(timespec="seconds")] = (t, obj_field(e, "report"))
            for body in self.bodies[device]:  # a check whose journal line was not carried
                h = obj_field(obj_field(obj_field(body, "status"), "active"), "health")
                t = parse_time(h.get("time"))
                if t is not None:
                    checks.setdefault(t.isoformat(timespec="seconds"), (t, obj_field(h, "report")))
            for t, report in checks.values():
                models = report.get("models")
                for m in models if isinstance(models, list) else []:
                    if not isinstance(m, dict):
                        continue
                    plots = out[str(m.get("name"))]
                    for key, field in (("p95", "p95_ms"), ("mem", "peak_rss_mb")):
                        v = finite(m.get(field))
                        if v is not None:
                            plots[key][device].append((t, v))
                            if m.get("ok") is False:
                                plots[f"failed_{key}"].append((t, v))
                    metrics = obj_field(obj_field(m, "evaluation"), "metrics")
                    for metric, value in metrics.items():
                        v = finite(value)
                        if v is not None:
                            plots["metrics"][str(metric)][device].append((t, v))
        return dict(sorted(out.items()))

    # -- drift over time -----------------------------------------------------
    def drift(self) -> dict[str, tuple[Series, float | None]]:
        out: dict[str, Series] = defaultdict(lambda: defaultdict(list))
        thresholds: dict[str, float] = {}
        for device, bodies in self.bodies.items():
            points: dict[tuple[str, datetime], float] = {}
            for body in bodies:
                t = parse_time(body.get("time"))
                models = obj_field(obj_field(obj_field(body, "status"), "drift"), "models")
                for model in models:
                    d = obj_field(models, model)
                    psi = finite(d.get("psi"))
                    if t is not None and psi is not None:
                        points[(str(model), t)] = psi
                        th = finite(d.get("threshold"))
                        if th is not None:
                            thresholds[str(model)] = th
            for e in self.events[device]:
                t, psi = parse_time(e.get("time")), finite(e.get("psi"))
                if e.get("event") == "drift-warning" and t is not None and psi is not None:
                    points.setdefault((str(e.get("model")), t), psi)
            for (model, t), psi in points.items():
                out[model][device].append((t, psi))
        return {m: (dict(s), thresholds.get(m)) for m, s in sorted(out.items())}

    # -- adoption ------------------------------------------------------------
    def adoption(self, site: str) -> tuple[Counter[str], Series]:
        """Devices per release at ``site`` now, and over time (from each report)."""
        devices = [d for d in self.devices if self.site(d) == site]
        now = Counter(str(r["release"] or "no release") for r in self.rows
                      if r["device"] in devices and r["health"] != "no report")
        timeline: list[tuple[datetime, str, str]] = []
        for d in devices:
            for body in self.bodies[d]:
                t = parse_time(body.get("time"))
                if t is not None:
                    active = obj_field(obj_field(body, "status"), "active")
                    timeline.append((t, d, str(active.get("id") or "no release")))
        timeline.sort()
        releases = sorted({r for _, _, r in timeline})
        running: dict[str, str] = {}
        series: Series = {r: [] for r in releases}
        for t, d, r in timeline:
            running[d] = r
            counts = Counter(running.values())
            for rel in releases:
                series[rel].append((t, float(counts[rel])))
        return now, series


def _fleet_table(f: _Fleet) -> str:
    rows: list[list[Cell]] = []
    order = sorted(f.rows, key=lambda r: (f.site(r["device"]), r["device"]))
    for r in order:
        ok = r["health_ok"]
        health = (state_word(ok) if ok is not None else
                  f'<span class="muted">{esc(r["health"])}</span>')
        drift = "-" if r["drift"] is None else (
            f'<span class="warn">! {r["drift"]:.2f} drift</span>' if r["drift_warn"]
            else f"{r['drift']:.2f}")
        release = (f'<span class="mono">{esc(r["release"])}</span> ({esc(r["version"])})'
                   if r["release"] else '<span class="muted">-</span>')
        if r.get("challenger"):
            agreement = r.get("shadow_agreement")
            release += (f'<br><span class="sub">challenger <span class="mono">'
                        f'{esc(r["challenger"])}</span>'
                        + ("" if agreement is None else f": {agreement:.1%} agreement")
                        + "</span>")
        if r.get("variants"):  # which variant of each model it runs
            release += "<br>" + " ".join(f'<span class="muted mono">{esc(m)}: {esc(v)}</span>'
                                         for m, v in r["variants"].items())
        rows.append([f'<span class="mono">{esc(r["device"])}</span>', esc(f.site(r["device"])),
                     esc(r["ring"]), release,
                     (health, {True: "1", False: "0"}.get(ok, "2")),
                     esc((r["last_check"] or "-")[:19].replace("T", " ")),
                     (esc(age_text(r["report_age_s"])),
                      str(r["report_age_s"] if r["report_age_s"] is not None else 10**12)),
                     esc(r["rollbacks"]), (drift, str(r["drift"] if r["drift"] is not None
                                                     else -1))])
    head = ["device", "site", "ring", "release (version)", "health", "last check (timezone.utc)",
            "report age", "rollbacks", "drift (PSI)"]
    failed = [r for r in order if r["health_ok"] is False]
    reasons = "".join(f'<li><b class="mono">{esc(r["device"])}</b>: '
                      f'<span class="reason">{esc(r.get("health_reason"))}</span></li>'
                      for r in failed)
    note = ("<p class='sub noprint'>Press a column's name to sort by it (needs JavaScript; "
            "without it the table is in site and device order).</p>")
    return (table(head, rows, sortable=True, numeric=[7]) + note
            + (f"<h3>Failed checks</h3><ul>{reasons}</ul>" if failed else ""))


def _adoption(f: _Fleet) -> str:
    out = []
    for site in sorted({f.site(d) for d in f.devices}):
        now, series = f.adoption(site)
        out.append(f'<div class="card"><h3>Site {esc(site)}</h3>'
                   + charts.bars(dict(now.most_common()), title="devices per release now",
                                 width=420)
                   + charts.lines(series, title="devices per release over time", step=True,
                                  width=_CARD_W, height=180)
                   + "</div>")
    return f'<div class="cards">{"".join(out)}</div>'


def _health(f: _Fleet) -> str:
    out = []
    for model, plots in f.health().items():
        parts = [charts.lines(dict(plots["p95"]), title=f"{model}: p95 latency per check",
                              unit=" ms", failed=plots["failed_p95"], width=_CARD_W),
                 charts.lines(dict(plots["mem"]), title=f"{model}: peak memory per check",
                              unit=" MiB", failed=plots["failed_mem"], width=_CARD_W)]
        for metric, series in sorted(plots["metrics"].items()):
            parts.append(charts.lines(dict(series), title=f"{model}: {metric} (evaluation)",
                                      width=_CARD_W))
        out.append(f"<h3>Model {esc(model)}</h3><p class='sub'>One line per device; ✗ marks a "
                   "failed check.</p><div class='cards'>"
                   + "".join(f"<div class='card'>{p}</div>" for p in parts) + "</div>")
    return "".join(out) or '<p class="none">No health check in any report yet.</p>'


def _drift(f: _Fleet) -> str:
    out = ["<div class='card'>" + charts.lines(
        series, title=f"{model}: input drift (PSI of the worst input)", threshold=threshold,
        width=_CARD_W)
        + "</div>" for model, (series, threshold) in f.drift().items()]
    return (f"<div class='cards'>{''.join(out)}</div>" if out
            else '<p class="none">No model reports drift.</p>')


def _problems(f: _Fleet) -> str:
    rejected: Counter[str] = Counter()
    rollbacks: Counter[str] = Counter()
    for r in f.rows:
        body = f.bodies[r["device"]][-1] if f.bodies[r["device"]] else {}
        counts = obj_field(body, "counts")
        for why, n in obj_field(counts, "rejected").items():
            rejected[str(why)] += int(finite(n) or 0)
        rb = counts.get("rollbacks")
        for item in rb if isinstance(rb, list) else []:
            if isinstance(item, dict):
                key = f"{item.get('trigger')} ({item.get('result')})"
                rollbacks[key] += int(finite(item.get("count")) or 0)
    events = [(str(e.get("time")), d, e) for d in f.devices for e in f.events[d]
              if e.get("event") in _PROBLEM_EVENTS]
    events.sort(key=lambda x: x[0], reverse=True)
    rows: list[list[Cell]] = []
    for t, d, e in events[:_SHOWN_PROBLEMS]:
        what = e.get("release") or e.get("current") or e.get("bundle") or e.get("model")
        reason = str(e.get("reason") or e.get("reasons") or "")
        if e.get("event") == "drift-warning":
            reason = f"model {e.get('model')}: PSI {e.get('psi')} > {e.get('threshold')}"
        rows.append([esc(t[:19].replace("T", " ")), f'<span class="mono">{esc(d)}</span>',
                     f'<b>{esc(str(e.get("event")).upper())}</b>',
                     f'<span class="mono">{esc(what)}</span>',
                     f'<span class="reason">{esc(reason)}</span>'])
    listing = (table(["time (timezone.utc)", "device", "what", "release or bundle", "reason"], rows)
               if rows else '<p class="none">No refusal, failure or rollback reported.</p>')
    return ('<div class="cards"><div class="card">'
            + charts.bars(dict(rejected.most_common()), title="rejected bundles by reason",
                          width=420)
            + '</div><div class="card">'
            + charts.bars(dict(rollbacks.most_common()), title="rollbacks by trigger (result)",
                          width=420)
            + "</div></div>" + listing)


def fleet_html(records: FleetSource, now: datetime | None = None) -> str:
    """The fleet report of everything ``records`` holds, as one HTML document."""
    f = _Fleet(records, now or datetime.now(timezone.utc))
    ok = sum(1 for r in f.rows if r["health_ok"] is True)
    bad = sum(1 for r in f.rows if r["health_ok"] is False)
    silent = sum(1 for r in f.rows if r["health"] == "no report")
    drifting = sum(1 for r in f.rows if r["drift_warn"])
    summary = (f"{len(f.rows)} device(s) at {len({f.site(d) for d in f.devices})} site(s): "
               f"{state_word(True, f'{ok} healthy')} · "
               + (state_word(False, no=f"{bad} failed") if bad else "0 failed")
               + f" · {silent} without a report"
               + (f' · <span class="warn">! {drifting} drifting</span>' if drifting else ""))
    header = (f"<header><h1>Airlock fleet report</h1><p class='sub'>Written "
              f"{esc(f.now.strftime('%Y-%m-%d %H:%M'))} UTC from the verified reports in "
              f"<span class='mono'>{esc(records.root)}</span></p><p>{summary}</p></header>")
    body = [header,
            section("Devices", _fleet_table(f), ident="devices"),
            section("Release adoption per site", _adoption(f), ident="adoption"),
            section("Health checks over time", _health(f), ident="health"),
            section("Input drift over time", _drift(f), ident="drift"),
            section("Rejected bundles and rollbacks", _problems(f), ident="problems")]
    return page("Airlock fleet report", body, script=SORT_SCRIPT)
