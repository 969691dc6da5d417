"""The SVG charts (airlock/page/charts.py): hostile labels stay text, odd numbers never break a chart."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from airlock.page.charts import bars, lines, meter, number, spark

HOSTILE = '<script>alert(1)</script>"\'&'
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _svgs(html: str) -> list[ET.Element]:
    """Every <svg> of a fragment, parsed as XML: escaping that slipped would not parse."""
    root = ET.fromstring(f"<div>{html}</div>")
    return [e for e in root.iter() if e.tag == "svg"]


@pytest.mark.parametrize("draw", [
    lambda: meter(3.0, 5.0, HOSTILE, unit="ms"),
    lambda: spark([0.1, 0.5], threshold=0.2, label=HOSTILE),
    lambda: bars({HOSTILE: 3, "ok": 1}, title=HOSTILE, unit=HOSTILE),
    lambda: lines({HOSTILE: [(T0, 1.0), (T0 + timedelta(hours=2), 2.0)]}, title=HOSTILE,
                  unit=HOSTILE, threshold=1.5),
], ids=["meter", "spark", "bars", "lines"])
def test_labels_from_reports_are_escaped_and_the_svg_parses(draw) -> None:  # type: ignore[no-untyped-def]
    html = draw()
    assert "<script>" not in html and "&lt;script&gt;" in html
    svgs = _svgs(html)
    assert svgs and all(s.get("role") == "img" and s.get("aria-label") for s in svgs)


def test_a_meter_over_budget_says_so_in_words() -> None:
    over = meter(80.0, 50.0, "p95 latency", unit="ms")
    assert "OVER" in over and 'class="bad"' in over and "p95 latency: 80ms (budget 50ms)" in over
    within = meter(20.0, 50.0, "p95 latency", unit="ms")
    assert "within" in within and "OVER" not in within
    # A floor (an accuracy minimum): under it is the failure.
    assert "UNDER" in meter(0.7, 0.9, "accuracy", higher_is_better=True)
    # A capacity is no judgement: no verdict word.
    assert "within" not in meter(10.0, 252.0, "disk", limit_word="of")


@pytest.mark.parametrize("value", [math.nan, math.inf, None])
def test_a_meter_without_a_drawable_value_is_a_dash_not_a_broken_bar(value: float | None) -> None:
    out = meter(value, 50.0, "p95")
    assert "<svg" not in out and "p95: -" in out


def test_bad_limits_are_dropped_not_drawn() -> None:
    for limit in (math.nan, -1.0, math.inf):
        out = meter(3.0, limit, "x")
        assert "budget" not in out and 'class="limit"' not in out
        _svgs(out)


def test_spark_and_lines_skip_values_they_cannot_draw() -> None:
    assert spark([math.nan, math.inf]) == ""
    assert "no data" in lines({"a": [(T0, math.nan)]}, title="t")
    out = spark([0.1, math.nan, 0.3], threshold=0.2, label="psi")
    assert out.count("<rect") == 2 and "psi: 0.1, 0.3" in out


def test_bars_without_counts_say_none() -> None:
    assert bars({}, title="rollbacks") == '<p class="none">rollbacks: none</p>'


def test_series_differ_by_dash_and_marker_not_only_colour() -> None:
    series = {f"cam-{i}": [(T0, float(i)), (T0 + timedelta(hours=1), float(i + 1))]
              for i in range(3)}
    svg = _svgs(lines(series, title="p95"))[0]
    dashes = {p.get("stroke-dasharray") for p in svg.iter("path") if "line" in (p.get("class") or "")}
    assert len(dashes) == 3  # none, "6 3", "2 2"
    assert any(e.tag == "rect" for e in svg.iter()) and any(e.tag == "circle" for e in svg.iter())


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (0.012345, "0.0123"), (12345.6, "12,346"), (math.nan, "-"), (-math.inf, "-"),
])
def test_numbers_are_written_short(value: float, text: str) -> None:
    assert number(value) == text
