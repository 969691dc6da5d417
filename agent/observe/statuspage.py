"""The device's status page: what ``serve`` answers at ``/``, for a technician with a laptop.

::

    html = status_page(layout, watch=[Path("/media/airlock")])   # one self-contained page
    html = render(status(layout), journal_tail(layout), drops=[], watch=[])  # the same, pure

It shows what ``status --json`` and the journal already hold, nothing
computed anew (one source of truth): device id and ring; the active and
previous release with versions, install times and their last health check;
per model the p95 latency and peak memory against their budgets (and the
evaluation checks when the check ran any) as labelled bars; the newest
installs, rejections and rollbacks with their reasons; drift per input (a
bar per feature against the threshold); store and disk use; and what serve
found in its drop folders (from its drop memory, ``ROOT/drops.json``).

The page is read-only and says so: it has no forms, no buttons, no links
that change anything, and a Content-Security-Policy that runs no script.
It refreshes itself with a meta refresh (no JavaScript). Everything shown is
escaped (``airlock.page.webpage.esc``): versions, reasons and bundle file names
come from media nobody vouched for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.layout import Layout
from agent.observe.status import status
from airlock.console import human_size
from airlock.errors import AirlockError
from airlock.files import read_json
from airlock.page import charts
from airlock.page.webpage import esc, finite, obj_field, page, section, state_word, table

__all__ = ["REFRESH_S", "drop_results", "journal_tail", "render", "status_page"]

#: How often the page reloads itself.
REFRESH_S = 30
# Journal events a technician asks about: what was installed, refused or undone, and why.
_EVENTS = {"installed", "install-failed", "rejected", "refused", "rolled-back",
           "rollback-failed", "already-active", "health-result", "drift-warning", "recovered",
           "probe-failed", "fsck-repair", "reinstall-verified", "promoted", "promote-failed"}
_SHOWN_EVENTS = 15
# What serve also answers; links that only read, like the page.
_MACHINE_PATHS = ("/status", "/metrics", "/healthz")
_SHOWN_DROPS = 10


def journal_tail(layout: Layout, keep: int = _SHOWN_EVENTS) -> list[dict[str, Any]]:
    """The newest ``keep`` notable journal entries, newest first."""
    tail: deque[dict[str, Any]] = deque(maxlen=keep)
    try:
        for entry in Journal(layout.journal).entries():
            if isinstance(entry, dict) and entry.get("event") in _EVENTS:
                tail.append(entry)
    except (AirlockError, OSError):
        pass  # status lists a damaged journal under damage
    return list(reversed(tail))


def drop_results(layout: Layout, keep: int = _SHOWN_DROPS) -> list[dict[str, Any]]:
    """What serve did with the newest drops (its drop memory), newest first."""
    try:
        raw = read_json(layout.drops)
    except (OSError, ValueError):
        return []
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, dict):
        return []
    entries = [e for e in files.values() if isinstance(e, dict)]
    entries.sort(key=lambda e: str(e.get("time")), reverse=True)
    return entries[:keep]


def status_page(layout: Layout, *, watch: Sequence[Path] = (),
                refresh_s: int = REFRESH_S) -> str:
    return render(status(layout, serving=True), journal_tail(layout), drops=drop_results(layout),
                  watch=watch, refresh_s=refresh_s)




def _size(n: object) -> str:
    """Bytes as ``status`` prints them (``airlock.console.human_size``), or ``-``."""
    value = finite(n)
    return "-" if value is None else esc(human_size(value))


def _when(text: object) -> str:
    return esc(str(text)[:19].replace("T", " ") if text else None)


def _release_rows(st: dict[str, Any]) -> list[list[str]]:
    rows = []
    for slot in ("active", "previous"):
        info = st.get(slot)
        if not isinstance(info, dict):
            rows.append([esc(slot), '<span class="muted">none</span>', "", "", "", ""])
            continue
        health = info.get("health") if isinstance(info.get("health"), dict) else None
        verdict = ('<span class="muted">not checked</span>' if health is None
                   else state_word(bool(health.get("ok"))))
        if "error" in info:
            verdict = f'<span class="bad">✗ UNREADABLE</span> {esc(info["error"])}'
        rows.append([esc(slot), f'<b class="mono">{esc(info.get("id"))}</b>',
                     f'{esc(info.get("name"))} <b>{esc(info.get("version"))}</b>',
                     esc(info.get("sequence")), _when(info.get("installed_at")),
                     verdict + (f' <span class="muted">checked {_when(health.get("time"))}'
                                "</span>" if health else "")])
    return rows


def _models(active: dict[str, Any] | None) -> str:
    if not isinstance(active, dict):
        return '<p class="none">No release is active.</p>'
    health = active.get("health") if isinstance(active.get("health"), dict) else None
    report = (health or {}).get("report")
    results = report.get("models") if isinstance(report, dict) else None
    budgets = obj_field(active, "budgets")
    if not isinstance(results, list) or not results:
        return '<p class="none">The active release has no health check on record.</p>'
    variants = obj_field(active, "variants")  # the variant of each model this device runs
    cards = []
    for m in results:
        if not isinstance(m, dict):
            continue
        name = str(m.get("name"))
        budget = obj_field(budgets, name)
        runs = (f' <span class="muted">variant <b class="mono">{esc(variants[name])}</b></span>'
                if isinstance(variants.get(name), str) else "")
        body = [f"<h3>{esc(name)}{runs} {state_word(m.get('ok') is True)}</h3>",
                charts.meter(finite(m.get("p95_ms")), finite(budget.get("max_p95_ms")),
                             "p95 latency", unit=" ms"),
                "<br>",
                charts.meter(finite(m.get("peak_rss_mb")), finite(budget.get("max_memory_mb")),
                             "peak memory", unit=" MiB")]
        body.append(_evaluation(m.get("evaluation")))
        if m.get("reason"):
            body.append(f'<p class="reason bad">Reason: {esc(m["reason"])}</p>')
        if m.get("note"):
            body.append(f'<p class="reason muted">Note: {esc(m["note"])}</p>')
        cards.append(f'<div class="card">{"".join(body)}</div>')
    when = f"Last check {_when(health.get('time'))}" if health else ""
    reason = (f'<p class="reason bad">✗ {esc(health["reason"])}</p>'
              if health and health.get("reason") else "")
    return f'<p class="sub">{when}</p>{reason}<div class="cards">{"".join(cards)}</div>'


def _evaluation(ev: object) -> str:
    """Evaluation checks (metric against its threshold) when the check ran an evaluation."""
    if not isinstance(ev, dict) or not isinstance(ev.get("checks"), list):
        return ""
    out = [f'<p class="sub">Evaluation on {esc(ev.get("samples"))} samples</p>']
    for c in ev["checks"]:
        if not isinstance(c, dict):
            continue
        value, bound = c.get("value"), c.get("bound")
        rule = str(c.get("rule"))
        label = f"{c.get('metric')} ({rule})"
        if rule in ("min", "max") and isinstance(bound, int | float):
            out.append(charts.meter(finite(value), float(bound), label,
                                    higher_is_better=rule == "min"))
        else:
            ok = c.get("ok")
            out.append(f"<span>{esc(label)}: {esc(value)} "
                       f"{state_word(ok if isinstance(ok, bool) else None, unknown='not applied')}"
                       "</span>")
        out.append("<br>")
    return "".join(out)


def _events(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return '<p class="none">Nothing installed, refused or rolled back yet.</p>'
    words = {"installed": ("✓ INSTALLED", "ok"), "already-active": ("ALREADY ACTIVE", "muted"),
             "flags-applied": ("⚑ FLAGS APPLIED", "ok"),
             "rejected": ("✗ REJECTED", "bad"), "refused": ("✗ REFUSED", "bad"),
             "install-failed": ("✗ INSTALL FAILED", "bad"),
             "rolled-back": ("↶ ROLLED BACK", "warn"),
             "rollback-failed": ("✗ ROLLBACK FAILED", "bad"),
             "health-result": ("HEALTH CHECK", ""), "drift-warning": ("! DRIFT", "warn"),
             "probe-failed": ("✗ PROBE FAILED", "bad"), "recovered": ("RECOVERED", "warn"),
             "promoted": ("⇪ PROMOTED", "ok"), "promote-failed": ("✗ PROMOTE FAILED", "bad")}
    rows = []
    for e in entries:
        event = str(e.get("event"))
        word, cls = words.get(event, (event.upper(), ""))
        if event == "health-result":
            word, cls = ("✓ HEALTH OK", "ok") if e.get("ok") else ("✗ HEALTH FAILED", "bad")
        what = e.get("release") or e.get("current") or e.get("bundle")
        extra = e.get("to")
        reason = e.get("reason") or e.get("reasons")
        if event == "drift-warning":
            reason = f"model {e.get('model')}: PSI {e.get('psi')} > {e.get('threshold')}"
        if event == "installed":
            reason = f"version {e.get('version')}"
        rows.append([_when(e.get("time")), f'<span class="{cls}">{esc(word)}</span>',
                     f'<span class="mono">{esc(what)}</span>'
                     + (f" → <span class=\"mono\">{esc(extra)}</span>" if extra else ""),
                     f'<span class="reason">{esc(reason) if reason else ""}</span>'])
    return table(["time (timezone.utc)", "what", "release or bundle", "reason"], rows)


def _drift(drift: object) -> str:
    models = drift.get("models") if isinstance(drift, dict) else None
    if not isinstance(models, dict) or not models:
        return '<p class="none">No model of the active release carries a drift reference.</p>'
    out = []
    for name, d in models.items():
        if not isinstance(d, dict):
            continue
        threshold = finite(d.get("threshold"))
        psi = d.get("psi")
        head = (f'<span class="warn">! DRIFT WARNING: PSI {esc(psi)} above {esc(threshold)}'
                "</span>" if d.get("warn") else
                '<span class="muted">no score yet</span>' if psi is None else
                f'<span class="ok">✓ no drift: PSI {esc(psi)} within {esc(threshold)}</span>')
        rows = []
        inputs = obj_field(d, "inputs")
        for inp, i in inputs.items():
            if not isinstance(i, dict):
                continue
            feats = obj_field(i, "features")
            values = [x for v in feats.values() if (x := finite(v)) is not None]
            rows.append([f'<span class="mono">{esc(inp)}</span>', esc(i.get("psi")),
                         f'<span class="mono">{esc(i.get("feature"))}</span>',
                         charts.spark(values, threshold=threshold,
                                      label=f"PSI per feature of {inp}")])
        body = table(["input", "PSI (worst)", "worst feature", "PSI per feature"], rows,
                     numeric=[1]) if rows else ""
        note = f'<p class="muted reason">{esc(d.get("note"))}</p>' if d.get("note") else ""
        out.append(f"<h3>{esc(name)}: {head}</h3><p class='sub'>{esc(d.get('rows'))} recent "
                   f"row(s) from {esc(d.get('files'))} file(s)</p>{body}{note}")
    return "".join(out)


def _hold(hold: dict[str, Any]) -> str:
    """A pending hold: what is on trial, until when, what comes back, how to keep it."""
    when = ("the deadline has passed" if hold.get("overdue")
            else f"{hold.get('seconds_left')} s left")
    return (f"<p class='warn'>⏳ <b class='mono'>{esc(hold.get('release'))}</b> is held until "
            f"<b>{esc(hold.get('deadline'))}</b> ({esc(when)}); then "
            f"<b class='mono'>{esc(hold.get('comes_back'))}</b> comes back. Keep it with "
            f"<code>{esc(hold.get('commit'))}</code> on the device; {esc(hold.get('reverts'))}."
            "</p>")


def _challenger(c: dict[str, Any]) -> str:
    """The staged challenger: its last shadow run per model, and how to promote it."""
    last: dict[str, Any] = c["last"] if isinstance(c.get("last"), dict) else {}
    rows = []
    for model, r in sorted((last.get("models") or {}).items()):
        if not isinstance(r, dict):
            continue
        agreement, ratio = finite(r.get("agreement")), finite(r.get("latency_ratio"))
        ok = r.get("verdict") == "passed"
        rows.append([esc(model),
                     "-" if agreement is None else esc(f"{agreement:.1%}"),
                     esc(f"≥ {r.get('min_agreement')}"),
                     "-" if ratio is None else esc(f"{ratio:.2f}"),
                     esc(r.get("samples")),
                     f"<span class='{'ok' if ok else 'warn'}'>{esc(r.get('verdict'))}</span>"])
    return (f"<p><b class='mono'>{esc(c.get('release'))}</b> is staged beside "
            f"<b class='mono'>{esc(c.get('against') or 'nothing')}</b> since "
            f"{esc(c.get('staged_at'))}; {esc(c.get('runs'))} shadow run(s) on this device's "
            f"own samples. <code>{esc(c.get('promote'))}</code> on the device switches to it."
            "</p>" + table(["model", "agreement", "needed", "latency ratio", "samples",
                            "last run"], rows))


def _clock(clock: dict[str, Any]) -> str:
    """A clock behind the time floor (a reset) or far past it, and the time expiry is judged at."""
    why = {"behind": "is behind the newest signed time this device has seen: expiry is judged "
                     "at that floor, so nothing expired gets in",
           "ahead": "is far past the newest signed time this device has seen: valid releases "
                    "may look expired; carry a time token ('airlock time-token') and run "
                    "<code>airlock-agent time apply time.json</code>",
           "corrected": "is off: expiry is judged by the last time token's offset"}
    return (f"<p class='warn'>🕑 The clock reads <b class='mono'>{esc(clock.get('clock'))}</b> "
            f"and {why.get(str(clock.get('state')), '')}; floor "
            f"<b class='mono'>{esc(clock.get('floor'))}</b> (from {esc(clock.get('floor_source'))}"
            f"), judged at <b class='mono'>{esc(clock.get('judged'))}</b>.</p>")


def _disk(st: dict[str, Any]) -> str:
    disk = obj_field(st, "disk")
    store = obj_field(st, "store")
    total, used = disk.get("total"), disk.get("used")
    gib = 1024 ** 3
    bar = ""
    if isinstance(total, int | float) and isinstance(used, int | float) and total:
        bar = charts.meter(used / gib, total / gib, "disk used", unit=" GiB",
                           limit_word="of")
    return (f"<p>{bar}</p><p>Content store: <b>{_size(store.get('bytes'))}</b> in "
            f"{esc(store.get('blobs'))} blob(s); free on disk: <b>{_size(disk.get('free'))}"
            f"</b> of {_size(total)} ({esc(disk.get('percent'))} % used). Releases kept: "
            f"{esc(', '.join(map(str, st.get('releases') or [])) or 'none')}.</p>")


def _drops(drops: list[dict[str, Any]], watch: Sequence[Path]) -> str:
    if watch:
        where = ", ".join(f'<span class="mono">{esc(w)}</span>'
                          + ("" if w.is_dir() else ' <span class="muted">(not mounted)</span>')
                          for w in watch)
        head = f"<p>Watching {where}.</p>"
    else:
        head = '<p class="muted">serve watches no drop folder (--watch).</p>'
    if not drops:
        return head + '<p class="none">No drop handled yet.</p>'
    words = {"installed": "ok", "flags_applied": "ok", "already_active": "muted", "skipped": "muted",
             "incomplete": "warn"}
    rows = [[_when(d.get("time")), f'<span class="mono">{esc(Path(str(d.get("drop"))).name)}'
             "</span>", f'<span class="{words.get(str(d.get("outcome")), "bad")}">'
             f'{esc(str(d.get("outcome")).upper().replace("_", " "))}</span>',
             f'<span class="mono">{esc(d.get("release"))}</span>'] for d in drops]
    return head + table(["time (timezone.utc)", "drop", "outcome", "release"], rows)


def render(st: dict[str, Any], events: list[dict[str, Any]], *, drops: list[dict[str, Any]],
           watch: Sequence[Path], refresh_s: int = REFRESH_S,
           now: datetime | None = None) -> str:
    """The page from a ``status`` document, journal entries (newest first) and drop results."""
    now = now or datetime.now(timezone.utc)
    device = st.get("device_id") or "unknown device"
    state = str(st.get("state"))
    active = st.get("active") if isinstance(st.get("active"), dict) else None
    health = (active or {}).get("health")
    overall = ("no release" if active is None else "not checked" if not isinstance(health, dict)
               else "healthy" if health.get("ok") else "health check FAILED")
    cls = "muted" if active is None or not isinstance(health, dict) else (
        "ok" if health.get("ok") else "bad")
    header = (f"<header><h1>Airlock device <span class='mono'>{esc(device)}</span></h1>"
              f"<p class='sub'>ring <b>{esc(st.get('ring') or 'none')}</b> · state "
              f"<b>{esc(state)}</b> · active <b class='mono'>"
              f"{esc((active or {}).get('id') or 'none')}</b> version "
              f"<b>{esc((active or {}).get('version'))}</b> · "
              f"<span class='{cls}'>{esc(overall)}</span></p>"
              "<p class='notice'>Read-only page: nothing can be changed from here. Use "
              "<code>airlock-agent</code> on the device, or drop a bundle on the stick. "
              f"Shown {esc(now.strftime('%Y-%m-%d %H:%M:%S'))} UTC; "
              + (f"<span class='noprint'>refreshes every {refresh_s} s.</span>" if refresh_s
                 else "a snapshot (<code>airlock-agent status --html</code>).")
              + "</p></header>")
    damage = st.get("damage") or []
    body = [header]
    hold = st.get("hold")
    if isinstance(hold, dict):
        body.append(section("Held install", _hold(hold), ident="hold"))
    challenger = st.get("challenger")
    if isinstance(challenger, dict):
        body.append(section("Challenger (shadow check)", _challenger(challenger),
                            ident="challenger"))
    clock = st.get("clock")
    if isinstance(clock, dict) and clock.get("state") in ("behind", "ahead", "corrected"):
        body.append(section("Clock", _clock(clock), ident="clock"))
    if damage:
        body.append(section("Damage", "<p class='bad'>✗ The agent's state is damaged; run "
                            "<code>airlock-agent fsck --repair</code>.</p><ul>"
                            + "".join(f"<li class='reason'>{esc(d)}</li>" for d in damage)
                            + "</ul>"))
    body += [
        section("Releases", table(["slot", "release", "name and version", "sequence",
                                   "installed (timezone.utc)", "last health check"],
                                  _release_rows(st))),
        section("Health of the active release", _models(active), ident="health"),
        section("Installs, rollbacks and refusals", _events(events), ident="events"),
        section("Input drift", _drift(st.get("drift")), ident="drift"),
        section("Storage", _disk(st)),
        section("Drop folder", _drops(drops, watch), ident="drops"),
        "<footer class='sub noprint'>The same, for machines: "
        + ", ".join(f'<a href="{p}">{p}</a>' for p in _MACHINE_PATHS) + "</footer>",
    ]
    return page(f"Airlock {device}", body, refresh_s=refresh_s)
