"""The shadow check: a challenger runs beside the running model on the device's own samples.

Real models (scripts/evalkit.py), real bundles, the real agent command line.
The site's samples come from ``evalkit.write_site_samples``; what the device
reports is checked against agreement computed by numpy straight from the two
models' weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundler.build.spec import load_spec
from scripts import evalkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import active_id, agent_json, assert_consistent, init_device
from tests.support.evalsets import eval_model
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

METRICS = {"accuracy": {"min": 0.92, "min_delta": -0.01}}
SHADOW = {"samples": 500, "min_agreement": 0.97, "max_latency_ratio": 5.0}


def _bundle(tmp_path: Path, keyset: Keys, sequence: int, perturb: float,
            shadow: dict[str, Any] | None = None) -> tuple[Path, Path]:
    model_dir = tmp_path / f"model-{sequence}"
    model = eval_model(model_dir, perturb=perturb, metrics=METRICS)
    if shadow is not None:
        model["shadow"] = shadow
    spec = write_spec(tmp_path, sequence=sequence, version=f"1.{sequence}", models=[model])
    return build(spec, tmp_path / f"vision-{sequence}.airlock", [keyset.release_key]), model_dir


def _numpy_agreement(a: Path, b: Path, samples: list[Path]) -> tuple[float, set[str]]:
    """Share of samples both models classify alike, and the names of those they do not."""
    wa, wb = evalkit.weights(a / "model.onnx"), evalkit.weights(b / "model.onnx")
    same, differ = 0, set()
    # Newest file first, as the device reads them.
    for path in sorted(samples, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        x = np.load(path)["x"].astype(np.float64)
        pa = (x @ wa["W"] + wa["b"]).argmax(axis=1)
        pb = (x @ wb["W"] + wb["b"]).argmax(axis=1)
        same += int((pa == pb).sum())
        differ |= {f"{path.name}[{i}]" for i in np.flatnonzero(pa != pb)}
    return same / sum(len(np.load(p)["x"]) for p in samples), differ


@pytest.fixture
def running(tmp_path: Path, keyset: Keys) -> tuple[Path, Path]:
    """A device running vision-1 (the fitted classifier); its model directory."""
    root = init_device(tmp_path / "device", keyset)
    v1, v1_dir = _bundle(tmp_path, keyset, 1, 0.0)
    agent_json(root, "install", v1)
    return root, v1_dir


def test_a_challenger_that_agrees_on_the_sites_samples_switches(
        tmp_path: Path, keyset: Keys, running: tuple[Path, Path]) -> None:
    root, v1_dir = running
    files = evalkit.write_site_samples(root / "samples" / "classifier", 500)
    v2, v2_dir = _bundle(tmp_path, keyset, 2, 0.03, SHADOW)
    result = agent_json(root, "install", v2)
    assert active_id(root) == "vision-2"
    (model,) = result["health"]["models"]
    shadow = model["shadow"]
    want, differ = _numpy_agreement(v1_dir, v2_dir, files)
    assert want >= 0.99
    assert shadow["samples"] == 500 and shadow["files"] == 10
    assert shadow["agreement"] == pytest.approx(want)
    assert shadow["verdict"] == "passed" and shadow["running_release"] == "vision-1"
    assert {d["sample"] for d in shadow["disagreements"]} == differ
    assert f"shadow check passed: agrees with vision-1 on {want:.1%}" in model["note"]
    assert shadow["latency_ratio"] > 0


def test_a_challenger_fine_at_hq_but_not_on_the_sites_samples_is_refused(
        tmp_path: Path, keyset: Keys, running: tuple[Path, Path]) -> None:
    root, v1_dir = running
    # The site's inputs sit away from what headquarters evaluated on.
    files = evalkit.write_site_samples(root / "samples" / "classifier", 500, shift=2.0)
    v2, v2_dir = _bundle(tmp_path, keyset, 2, 0.15, SHADOW)
    shown = run_airlock("inspect", v2).stdout  # what the release asks of the device, signed
    assert ("shadow check: newest 500 device samples, agreement >= 97.0% (auto), latency "
            "ratio <= 5; too few: fail") in shown
    r = run_agent("--root", root, "install", v2)
    assert r.returncode == 4, r.stderr
    assert active_id(root) == "vision-1"
    want, differ = _numpy_agreement(v1_dir, v2_dir, files)
    assert 0.7 < want < 0.85
    (line,) = r.stderr.strip().splitlines()
    assert (f"health check of model 'classifier' failed: shadow check: agrees with vision-1 on "
            f"{want:.1%} of 500 device samples < min_agreement 97.0% (latency ratio ") in line
    assert line.endswith("vision-1 stays active")
    named = [n.split(" (running")[0] for n in line.split("worst disagreements: ")[1].split(", ")
             if "[" in n]
    assert len(named) == 3 and set(named) <= differ
    # Its goldens and its labelled evaluation passed: only the site's samples tell.
    history = agent_json(root, "history")["entries"]
    (checked,) = [e for e in history if e["event"] == "health-result"
                  and e["release"] == "vision-2"]
    (model,) = checked["report"]["models"]
    assert model["worst"]["probs"]["ok"] is True
    assert all(c["ok"] for c in model["evaluation"]["checks"])
    assert model["shadow"]["verdict"] == "failed" and len(model["shadow"]["disagreements"]) == 20
    assert_consistent(root)


@pytest.mark.parametrize("when", ["fail", "pass"])
def test_too_few_samples_says_so_and_follows_the_spec(
        tmp_path: Path, keyset: Keys, running: tuple[Path, Path], when: str) -> None:
    root, _ = running
    evalkit.write_site_samples(root / "samples" / "classifier", 120)
    v2, _ = _bundle(tmp_path, keyset, 2, 0.05, {**SHADOW, "when_too_few": when})
    r = run_agent("--root", root, "install", v2)
    said = (f"shadow check: 120 device sample(s) in {root / 'samples' / 'classifier'}, "
            f"500 asked (when_too_few: {when})")
    if when == "fail":
        assert r.returncode == 4 and said in r.stderr
        assert active_id(root) == "vision-1"
    else:
        assert r.returncode == 0, r.stderr
        assert active_id(root) == "vision-2"
        (model,) = _last_health(root)["report"]["models"]
        assert said + "; not compared" in model["note"]


def _last_health(root: Path) -> dict[str, Any]:
    history = agent_json(root, "history")["entries"]
    return [e for e in history if e["event"] == "health-result"][-1]


def test_the_spec_refuses_a_bad_shadow_field_naming_it(tmp_path: Path) -> None:
    model = eval_model(tmp_path / "m", metrics=METRICS)
    model["shadow"] = {"samples": 500, "min_agreement": 1.5}
    spec = write_spec(tmp_path, models=[model])
    with pytest.raises(Exception) as e:
        load_spec(spec)
    assert "models[0].shadow.min_agreement" in str(e.value)
    assert "must be a share between 0 and 1" in str(e.value)


def test_regressors_agree_within_atol_and_rtol(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    shadow = {"samples": 400, "min_agreement": 0.9, "atol": 0.01, "rtol": 0.01}

    def bundle(sequence: int, perturb: float, **extra: Any) -> tuple[Path, Path]:
        model_dir = tmp_path / f"reg-{sequence}"
        model = eval_model(model_dir, name="regressor", kind="regressor", perturb=perturb,
                           metrics={"mae": {"max": 1.0}})
        model.update(extra)
        spec = write_spec(tmp_path, sequence=sequence, version=f"1.{sequence}", models=[model])
        return build(spec, tmp_path / f"reg-{sequence}.airlock", [keyset.release_key]), model_dir

    v1, d1 = bundle(1, 0.0)
    agent_json(root, "install", v1)
    folder = root / "samples" / "regressor"
    folder.mkdir(parents=True)
    x = np.random.default_rng(11).standard_normal((400, 8)).astype(np.float32)
    for i in range(4):
        np.savez(folder / f"r-{i}.npz", x=x[i * 100:(i + 1) * 100])
    v2, d2 = bundle(2, 0.02, shadow=shadow)
    r = run_agent("--root", root, "install", v2, "--json")
    # What numpy says: every output within atol + rtol * |running|.
    wa, wb = evalkit.weights(d1 / "model.onnx"), evalkit.weights(d2 / "model.onnx")
    ya = (x.astype(np.float64) @ wa["W"] + wa["b"]).ravel()
    yb = (x.astype(np.float64) @ wb["W"] + wb["b"]).ravel()
    want = float((np.abs(yb - ya) <= 0.01 + 0.01 * np.abs(ya)).mean())
    assert 0.05 < want < 0.95  # the tolerance decides, so the test measures something
    shadow_facts = _last_health(root)["report"]["models"][0]["shadow"]
    assert shadow_facts["compare"] == "close"
    assert shadow_facts["agreement"] == pytest.approx(want, abs=0.0051)
    assert (r.returncode == 0) == (want >= 0.9)


def test_with_nothing_running_there_is_nothing_to_shadow_and_it_says_so(
        tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    v1, _ = _bundle(tmp_path, keyset, 1, 0.0, SHADOW)
    agent_json(root, "install", v1)
    health = json.loads((root / "releases" / "vision-1" / "health.json").read_text())
    assert health["ok"] is True
    assert health["shadow_notes"] == ["model 'classifier': no running model to shadow "
                                      "(nothing runs yet)"]


def test_hostile_sample_files_are_skipped_not_loaded(
        tmp_path: Path, keyset: Keys, running: tuple[Path, Path]) -> None:
    root, _ = running
    folder = root / "samples" / "classifier"
    evalkit.write_site_samples(folder, 500)
    # Newest of all: a compression bomb (80 MiB of zeros unpacked) and a link out of ROOT.
    np.savez_compressed(folder / "zz-bomb.npz", x=np.zeros((1_310_720, 16), np.float32))
    (folder / "zz-link.npz").symlink_to("/etc/passwd")
    v2, _ = _bundle(tmp_path, keyset, 2, 0.03, SHADOW)
    agent_json(root, "install", v2)
    shadow = _last_health(root)["report"]["models"][0]["shadow"]
    assert shadow["samples"] == 500 and shadow["verdict"] == "passed"
    (skipped,) = shadow["skipped"]
    assert skipped.startswith("zz-bomb.npz: unpacks to more than")
    assert all("zz-link" not in d["sample"] for d in shadow["disagreements"])


def test_diff_names_a_changed_shadow_check(tmp_path: Path, keyset: Keys) -> None:
    model = eval_model(tmp_path / "m", metrics=METRICS)
    old = build(write_spec(tmp_path, models=[model]), tmp_path / "old.airlock",
                [keyset.release_key])
    model["shadow"] = SHADOW
    model["samples"] = {"export": False}
    new = build(write_spec(tmp_path, sequence=2, models=[model]), tmp_path / "new.airlock",
                [keyset.release_key])
    r = run_airlock("diff", old, new)
    assert r.returncode == 0, r.stderr
    assert "shadow check changed; sample export changed" in r.stdout
