"""Percentage buckets of feature flags: stable per device and flag, about the share asked for,
and growing a percentage only adds devices (keys/flags.py)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from keys.flags import bucket, in_bucket

DEVICES = [f"cam-{i:04d}" for i in range(1000)]


def _chosen(percent: float, flag: str = "night_mode") -> set[str]:
    return {d for d in DEVICES if in_bucket(d, flag, percent)}


@pytest.mark.parametrize("percent", [0, 50, 100])
def test_share_is_within_a_few_points_of_the_percentage(percent: int) -> None:
    share = len(_chosen(percent)) / len(DEVICES) * 100
    assert abs(share - percent) <= 4, share
    if percent in (0, 100):
        assert share == percent


def test_identical_across_runs_and_processes() -> None:
    here = sorted(_chosen(50))
    code = ("from keys.flags import in_bucket; "
            f"print(sorted(d for d in {DEVICES!r} if in_bucket(d, 'night_mode', 50)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin"},
                           cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert other.stdout.strip() == str(here)
    assert bucket("cam-7", "night_mode") == bucket("cam-7", "night_mode")


def test_raising_the_percentage_keeps_the_devices_already_in() -> None:
    steps = [_chosen(p) for p in (1, 10, 20, 50, 99, 100)]
    for smaller, larger in itertools.pairwise(steps):
        assert smaller <= larger
    assert len(steps[1]) < len(steps[2])


def test_each_flag_draws_its_own_devices() -> None:
    assert _chosen(50, "night_mode") != _chosen(50, "fast_path")
