"""What a device's report says, read into one typed, bounded object before anything uses it.

A report is the device's word: its signature says which device wrote it, not
that its fields have the shapes headquarters expects. One enrolled device's
report with a list where its ring belongs, a count that is text or a time in
2099 must cost that report (refused in one line), never the whole fleet's
ingest, table or textfile::

    facts = report_facts(doc.body)          # FormatError naming the field, or:
    facts.ring, facts.release, facts.health_ok, facts.rollbacks, facts.drift

The rules: names are plain names (``keys.signed_fields``), texts are single
lines of bounded length, counts are non-negative integers, scores are finite
numbers, and times are ISO times no later than ``MAX_REPORT_CLOCK_SKEW_S``
after headquarters' own clock (a report from the future would sort as every
later report's newer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airlock.errors import FormatError
from airlock.limits import MAX_REPORT_CLOCK_SKEW_S
from keys.signed_fields import is_plain_name

__all__ = ["ReportFacts", "report_facts"]

_MAX_TEXT = 500  # a health reason, a version: one line a table can show
_MAX_COUNT = 10**9


@dataclass(frozen=True)
class ReportFacts:
    """The fields of a report that headquarters shows, each of its one type."""

    device_id: str
    time: datetime
    ring: str | None = None
    release: str | None = None
    version: str | None = None
    health_ok: bool | None = None
    health_reason: str | None = None
    last_check: datetime | None = None
    rollbacks: int = 0
    drift: dict[str, float] = field(default_factory=dict)
    drift_warn: bool = False
    challenger: str | None = None  # staged with install --no-switch
    shadow_agreement: float | None = None  # its last shadow run, the lowest of its models
    variants: dict[str, str] = field(default_factory=dict)  # model -> the variant it runs


def report_facts(body: dict[str, Any], now: datetime | None = None) -> ReportFacts:
    """``body`` read by the rules above; FormatError naming the first field that breaks one."""
    now = now or datetime.now(timezone.utc)
    device = body.get("device_id")
    if not is_plain_name(device):
        raise FormatError("report field 'device_id' is not a plain name")
    when = _time(body.get("time"), "time", now)
    if when is None:
        raise FormatError(f"report of {device} has no valid 'time'")
    status = _object(body, "status")
    active = _object(status, "active", "status.") if status.get("active") is not None else None
    health = None
    if active is not None and active.get("health") is not None:
        health = _object(active, "health", "status.active.")
    ok = None if health is None else health.get("ok")
    if ok is not None and not isinstance(ok, bool):
        raise FormatError("report field 'status.active.health.ok' is not true or false")
    drift, warn = _drift(_object(_object(status, "drift", "status."), "models",
                                 "status.drift."))
    return ReportFacts(
        device_id=str(device), time=when,
        ring=_name(body.get("ring"), "ring"),
        release=None if active is None else _name(active.get("id"), "status.active.id"),
        version=None if active is None else line_of(active.get("version"),
                                                  "status.active.version"),
        health_ok=ok,
        health_reason=None if health is None else line_of(health.get("reason"),
                                                        "status.active.health.reason"),
        last_check=None if health is None else _time(health.get("time"),
                                                     "status.active.health.time", now),
        rollbacks=_rollbacks(_object(body, "counts").get("rollbacks")),
        drift=drift, drift_warn=warn,
        variants=_variants(None if active is None else active.get("variants")),
        **_challenger(_object(status, "challenger", "status.")))


def _challenger(c: dict[str, Any]) -> dict[str, Any]:
    """The staged challenger's release and its lowest agreement in the last shadow run."""
    if not c:
        return {}
    last = _object(c, "last", "status.challenger.")
    values = [m.get("agreement") for m in _object(last, "models", "status.challenger.last.")
              .values() if isinstance(m, dict)]
    numbers = [float(v) for v in values if isinstance(v, int | float)
               and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1]
    return {"challenger": _name(c.get("release"), "status.challenger.release"),
            "shadow_agreement": min(numbers) if numbers else None}


def _variants(value: object) -> dict[str, str]:
    """``status.active.variants``: model -> variant, both plain names (absent: none)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 1000:
        raise FormatError("report field 'status.active.variants' is not an object of models")
    return {str(_name(k, "status.active.variants")): str(_name(v, f"status.active.variants.{k}"))
            for k, v in value.items()}


def _object(d: dict[str, Any], key: str, at: str = "") -> dict[str, Any]:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"report field '{at}{key}' is not an object")
    return value


def _name(value: object, at: str) -> str | None:
    if value is None:
        return None
    if not is_plain_name(value):
        raise FormatError(f"report field '{at}' is not a plain name")
    return str(value)


def line_of(value: object, at: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT or not value.isprintable():
        raise FormatError(f"report field '{at}' is not one line of at most {_MAX_TEXT} "
                          "printable characters")
    return value


def _time(value: object, at: str, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FormatError(f"report field '{at}' is not an ISO time") from None
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    if t > now + timedelta(seconds=MAX_REPORT_CLOCK_SKEW_S):
        raise FormatError(f"report field '{at}' is {value}, in the future (is the device's "
                          "clock wrong? 'airlock-agent time' sets it)")
    return t


def _count(value: object, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise FormatError(f"report field '{at}' is not a count")
    return value


def _rollbacks(rows: object) -> int:
    """Rollbacks that happened (result ok), as the device's journal tally lists them."""
    if rows is None:
        return 0
    if not isinstance(rows, list):
        raise FormatError("report field 'counts.rollbacks' is not a list")
    total = 0
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise FormatError(f"report field 'counts.rollbacks[{i}]' is not an object")
        n = _count(r.get("count", 0), f"counts.rollbacks[{i}].count")
        total += n if r.get("result") == "ok" else 0
    return total


def _drift(models: dict[str, Any]) -> tuple[dict[str, float], bool]:
    scores: dict[str, float] = {}
    warn = False
    for name, m in models.items():
        if not is_plain_name(name) or not isinstance(m, dict):
            raise FormatError("report field 'status.drift.models' holds an entry that is not "
                              "a model's drift")
        psi = m.get("psi")
        if psi is None:
            continue
        if isinstance(psi, bool) or not isinstance(psi, int | float) or not math.isfinite(psi):
            raise FormatError(f"report field 'status.drift.models.{name}.psi' is not a number")
        scores[name] = float(psi)
        warn = warn or m.get("warn") is True
    return scores, warn
