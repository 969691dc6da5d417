"""``airlock-agent status``: the active and previous release, agent state, disk use, damage.

    airlock-agent status --json
    airlock-agent status --html /media/usb/cam-7.html

A plain status never takes the lock (polling it cannot make an install exit
5); it recovers only when a crash left work behind and no one else works.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.commands.base import inputs_line, layout_of, tell
from agent.facts import facts_line
from agent.layout import Layout
from airlock.command import Reported
from airlock.console import human_size, json_option
from airlock.errors import PreconditionError, UsageError
from airlock.files import write_atomic

EXAMPLES = ("airlock-agent status --json", "airlock-agent status --html /media/usb/cam-7.html")
DESCRIPTION = None
_SHOWN = 5  # damage lines status prints before "and N more"


def add_arguments(p: argparse.ArgumentParser) -> None:
    json_option(p)
    p.add_argument("--html", type=Path, metavar="FILE.html",
                   help="also write the status page serve shows at / (one self-contained file)")


@dataclass(frozen=True)
class Status(Reported):
    """``agent.observe.status.status``, and the page written with ``--html``."""

    def text(self) -> str:
        d = self.data
        last = d["last_notable_event"]
        device = d["device_id"] or "unknown (agent.yaml is damaged)"
        agent = d["agent"]
        lines = [f"device    {device}" + (f" (ring {d['ring']})" if d["ring"] else ""),
                 f"agent     {agent['version']} ({agent['platform']}, Python "
                 f"{agent['python']}, " + (f"kit {agent['kit']})" if agent["kit"] else "pip)"),
                 "facts     " + facts_line(d.get("facts")),
                 _release_line("active", d["active"]),
                 _release_line("previous", d["previous"]),
                 f"state     {d['state']}"
                 + (f" (pid {d['lock_holder']})" if d["lock_holder"] else ""),
                 f"store     {d['store']['blobs']} blobs, {human_size(d['store']['bytes'])}; "
                 f"{len(d['releases'])} release(s); disk {human_size(d['disk']['free'])} free"]
        lines += _hold_lines(d.get("hold"))
        lines += challenger_lines(d.get("challenger"))
        lines += _clock_lines(d.get("clock"))
        lines += _directed_lines(d.get("directed"))
        lines += _drift_lines(d.get("drift"))
        if last:
            what = " ".join(str(x) for x in (last["event"], last.get("release")) if x)
            lines.append(f"last      {last['time']} {what}: {last.get('reason') or ''}")
        for model, seen in (d.get("inputs") or {}).items():
            if seen["files"]:  # nothing dropped yet: nothing to say
                lines.append(inputs_line(model, seen))
        if d["read_only"]:
            lines.append("read-only ROOT is mounted read-only: nothing can be installed")
        lines += _damage_lines(d["damage"])
        if d.get("html"):
            lines.append(f"page      {d['html']}")
        return "\n".join(lines)


def run(args: argparse.Namespace) -> Status:
    from agent.lock import AgentLock
    from agent.observe.status import status
    from agent.recovery import needs_recovery, recover
    from agent.shape import find_flaws, is_read_only

    layout = layout_of(args)
    layout.require_initialised()
    # Repair first when a crash left work behind and no one else is working. A damaged
    # or read-only ROOT is only reported: recovery is for what a crash leaves, not for that.
    sound = not any(f.blocking for f in find_flaws(layout)) and not is_read_only(layout)
    if sound and needs_recovery(layout):
        with contextlib.suppress(PreconditionError, PermissionError), AgentLock(layout.lock):
            for line in recover(layout):
                tell("recovered", line)
    st = status(layout)
    if getattr(args, "html", None) is not None:
        st["html"] = _status_html(layout, st, args.html)
    return Status(st)


def _status_html(layout: Layout, st: dict[str, Any], path: Path) -> str:
    """The status page as a file (for a laptop without network, or the stick)."""
    from agent.observe.statuspage import drop_results, journal_tail, render

    if path.suffix.lower() not in (".html", ".htm") or path.is_dir():
        raise UsageError(f"--html {path}: give a file name ending in .html")
    page = render(st, journal_tail(layout), drops=drop_results(layout), watch=[], refresh_s=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, page.encode())
    return str(path.absolute())


def _release_line(label: str, r: dict[str, Any] | None) -> str:
    if r is None:
        return f"{label:<9} none"
    if "error" in r:
        return f"{label:<9} {r['id']}: {r['error']}"
    h = r.get("health")
    health = "not checked" if h is None else "ok" if h.get("ok") else f"FAILED ({h.get('reason')})"
    line = (f"{label:<9} {r['name']} {r['version']} (sequence {r['sequence']})  "
            f"installed {r.get('installed_at') or '?'}  health: {health}")
    if r.get("variants"):
        line += f"\n{'':<9} variants: " + ", ".join(f"{m} runs {v}"
                                                   for m, v in r["variants"].items())
    for model, values in (r.get("metrics") or {}).items():
        shown = ", ".join(f"{k} {values[k]:.4g}" for k in values.get("checked") or []
                          if isinstance(values.get(k), int | float))
        line += f"\n{'':<9} {model}: {shown} on {values.get('samples')} evaluation samples"
    return line


def challenger_lines(c: dict[str, Any] | None) -> list[str]:
    """The staged challenger and its last shadow run, per model."""
    if not c:
        return []
    lines = [f"challenger {c['release']} staged {c.get('staged_at') or '?'} against "
             f"{c.get('against') or 'nothing'}; {c['runs']} shadow run(s); "
             f"'{c['promote']}' switches to it"]
    for model, r in sorted(((c.get("last") or {}).get("models") or {}).items()):
        agreement, ratio = r.get("agreement"), r.get("latency_ratio")
        lines.append(f"{'':<10} {model}: agreement "
                     + (f"{agreement:.1%}" if isinstance(agreement, int | float) else "-")
                     + f" on {r.get('samples')} sample(s), latency ratio "
                     + (f"{ratio:.2f}" if isinstance(ratio, int | float) else "-")
                     + f" ({r.get('verdict')})")
    return lines


def _drift_lines(drift: dict[str, Any] | None) -> list[str]:
    lines = []
    for model, dr in sorted((drift or {}).get("models", {}).items()):
        score = ("no score" if dr.get("psi") is None
                 else f"PSI {dr['psi']:.3f} ({'WARNING: over' if dr['warn'] else 'under'} "
                      f"{dr['threshold']:g})")
        lines.append(f"drift     {model}: {score}, {dr.get('rows', 0)} recent row(s)"
                     + (f"; {dr['note']}" if dr.get("note") else ""))
    return lines


def _damage_lines(damage: list[str]) -> list[str]:
    lines = [f"damaged   {line}" for line in damage[:_SHOWN]]
    if len(damage) > _SHOWN:
        lines.append(f"damaged   … and {len(damage) - _SHOWN} more (see --json)")
    if damage:
        lines.append("          run 'airlock-agent fsck --repair' (it says what it cannot fix)")
    return lines


def _hold_lines(hold: dict[str, Any] | None) -> list[str]:
    """A pending hold: deadline, what comes back, how to commit, who reverts it."""
    if not hold:
        return []
    when = ("the deadline has PASSED" if hold["overdue"]
            else f"{hold['seconds_left']} s left")
    return [f"HELD      {hold['release']} until {hold['deadline']} ({when}); then "
            f"{hold['comes_back']} comes back",
            f"          keep it: '{hold['commit']}'; {hold['reverts']}"]


def _clock_lines(clock: dict[str, Any] | None) -> list[str]:
    """A clock behind the time floor or far past it: said, with what expiry is judged at."""
    if not clock or clock["state"] not in ("behind", "ahead", "corrected"):
        return []
    why = {"behind": f"is behind the newest signed time {clock['floor']}; expiry is judged "
                     f"at that floor",
           "ahead": f"is far past the newest signed time {clock['floor']}; releases may look "
                    "expired: apply a time token ('airlock-agent time apply FILE')",
           "corrected": f"is off; expiry is judged at {clock['judged']} (last time token)"}
    return [f"clock     {clock['clock']} {why[clock['state']]}"]


def _directed_lines(directed: dict[str, Any] | None) -> list[str]:
    """A directed device: it installs only what a visit names; the last one it followed."""
    if not directed:
        return []
    if directed.get("error"):
        return [f"directed  {directed['error']}"]
    last = directed.get("followed")
    what = (f"{last['action']}" + (f" {last['release']}" if last.get("release") else "")
            if last else "none yet")
    return [f"directed  installs only what a signed visit names; last visit "
            f"{directed['sequence'] or '-'} ({what})"]
