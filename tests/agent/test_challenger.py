"""Champion and challenger over time: stage with --no-switch, watch its shadow runs, promote.

Real models, bundles and agent command lines: a challenger that a shadow check
would refuse is staged instead (recorded, not judged), kept by ``gc``, shown by
``status``, and switched to by ``promote`` through the install envelope, held
until ``commit`` like an install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.layout import Layout
from agent.observe.metrics import Observed, metrics_registry
from scripts import evalkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import active_id, agent_json, assert_consistent, init_device
from tests.support.evalsets import eval_model
from tests.support.keyset import Keys
from tests.support.serve import Serve, metric
from tests.support.spec import build, write_spec

SHADOW = {"samples": 500, "min_agreement": 0.97, "max_latency_ratio": 5.0}


def _bundle(tmp_path: Path, keyset: Keys, sequence: int, perturb: float,
            **fields: Any) -> Path:
    model = eval_model(tmp_path / f"model-{sequence}", perturb=perturb,
                       metrics={"accuracy": {"min": 0.92, "min_delta": -0.01}})
    model.update(fields)
    spec = write_spec(tmp_path, sequence=sequence, version=f"1.{sequence}", models=[model])
    return build(spec, tmp_path / f"vision-{sequence}.airlock", [keyset.release_key])


@pytest.fixture
def staged(tmp_path: Path, keyset: Keys) -> Path:
    """vision-1 running, vision-2 (agrees on ~80% of the site's samples) staged."""
    root = init_device(tmp_path / "device", keyset)
    agent_json(root, "install", _bundle(tmp_path, keyset, 1, 0.0))
    evalkit.write_site_samples(root / "samples" / "classifier", 500, shift=2.0)
    result = agent_json(root, "install", _bundle(tmp_path, keyset, 2, 0.15, shadow=SHADOW),
                        "--no-switch")
    assert result["active"] == "vision-1" and result["challenger"]["release"] == "vision-2"
    return root


def test_a_staged_challenger_is_recorded_shown_kept_and_promoted(staged: Path,
                                                                 tmp_path: Path) -> None:
    root = staged
    status = agent_json(root, "status")
    challenger = status["challenger"]
    assert challenger["release"] == "vision-2" and challenger["against"] == "vision-1"
    (run,) = [challenger["last"]["models"]["classifier"]]
    assert 0.7 < run["agreement"] < 0.85 and run["verdict"] == "failed"
    assert run["samples"] == 500 and run["latency_ratio"] > 0
    text = run_agent("--root", root, "status").stdout
    assert "challenger vision-2 staged" in text and "against vision-1; 1 shadow run(s)" in text
    assert f"classifier: agreement {run['agreement']:.1%} on 500 sample(s)" in text
    # /metrics says the same.
    registry = metrics_registry(Layout(root), Observed())
    assert registry.get_sample_value("airlock_shadow_agreement", {
        "release": "vision-2", "against": "vision-1", "model": "classifier"}) == \
        pytest.approx(run["agreement"])
    assert registry.get_sample_value("airlock_shadow_latency_ratio", {
        "release": "vision-2", "against": "vision-1", "model": "classifier"}) == \
        pytest.approx(run["latency_ratio"])

    # The status page and, through the signed report, the fleet report show it too.
    page = tmp_path / "page.html"
    run_agent("--root", root, "status", "--html", page)
    html = page.read_text()
    assert "Challenger (shadow check)" in html and f"{run['agreement']:.1%}" in html
    report = tmp_path / "stick" / "dev.report.json"
    agent_json(root, "report", "-o", report)
    fleet = tmp_path / "fleet"
    assert run_airlock("report", "enroll", root / "device.pub", "--device-id", "test-dev",
                       "--fleet", fleet).returncode == 0
    r = run_airlock("report", "ingest", report, "--fleet", fleet, "--json",
                    "--html", tmp_path / "fleet.html")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["devices"]
    assert row["challenger"] == "vision-2"
    assert row["shadow_agreement"] == pytest.approx(run["agreement"])
    assert f"{run['agreement']:.1%} agreement" in (tmp_path / "fleet.html").read_text()

    # gc keeps it, even with nothing else to keep.
    agent_json(root, "gc", "--keep", "0")
    assert (root / "releases" / "vision-2").is_dir()

    promoted = agent_json(root, "promote", "--hold", "600")
    assert promoted["active"] == "vision-2" and promoted["previous"] == "vision-1"
    assert promoted["held_until"]
    assert active_id(root) == "vision-2"
    assert agent_json(root, "status")["challenger"] is None
    agent_json(root, "commit")
    assert agent_json(root, "status")["hold"] is None
    assert_consistent(root)


def test_promote_with_nothing_staged_exits_5(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    r = run_agent("--root", root, "promote")
    assert r.returncode == 5
    assert "no challenger is staged; 'airlock-agent install BUNDLE --no-switch' stages one" \
        in r.stderr


def test_serve_reruns_the_shadow_check_and_auto_promotes_after_k_passing_runs(
        tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    agent_json(root, "install", _bundle(tmp_path, keyset, 1, 0.0))
    folder = root / "samples" / "classifier"
    evalkit.write_site_samples(folder, 500)  # inputs like headquarters': the two agree
    agent_json(root, "install", _bundle(tmp_path, keyset, 2, 0.03, shadow=SHADOW),
               "--no-switch")
    with Serve.start(root, extra=["--shadow-every", "1s", "--auto-promote", "2"]) as s:
        first = s.wait_event("shadow-run")
        model = first["models"]["classifier"]
        assert first["release"] == "vision-2" and first["against"] == "vision-1"
        assert model["verdict"] == "passed" and model["agreement"] >= 0.99
        text = s.get("/metrics")
        assert metric(text, "airlock_shadow_agreement", release="vision-2",
                      against="vision-1", model="classifier") == pytest.approx(
                          model["agreement"])
        promoted = s.wait_event("promoted")
        assert promoted["release"] == "vision-2" and promoted["previous"] == "vision-1"
        assert "its last 2 shadow run(s) all met" in promoted["reason"]
    assert active_id(root) == "vision-2"
    assert agent_json(root, "status")["challenger"] is None
    assert_consistent(root)


def test_a_sample_pack_carries_both_models_outputs_on_its_samples(staged: Path,
                                                                  tmp_path: Path) -> None:
    import numpy as np

    pack = tmp_path / "pack"
    result = agent_json(staged, "samples", "export", "--budget", "1MiB", "-o", pack)
    samples = [f for f in result["files"] if f["why"] != "outputs"]
    (outputs,) = [f for f in result["files"] if f["why"] == "outputs"]
    assert outputs["running_release"] == "vision-1"
    assert outputs["candidate_release"] == "vision-2"
    with np.load(pack / "classifier" / "airlock-outputs.npz") as npz:
        names, running, candidate = npz["sample"], npz["running"], npz["candidate"]
    rows = {f["file"]: len(np.load(pack / "classifier" / f["file"])["x"]) for f in samples}
    assert len(names) == sum(rows.values()) == 500
    # Both models' word on each sample, as numpy computes it from their weights.
    for i in (0, 137, 499):
        file, row = str(names[i]).rstrip("]").split("[")
        x = np.load(pack / "classifier" / file)["x"][int(row)].astype(np.float64)
        for weights, got in ((tmp_path / "model-1", running[i]),
                             (tmp_path / "model-2", candidate[i])):
            w = evalkit.weights(weights / "model.onnx")
            assert int(np.argmax(x @ w["W"] + w["b"])) == int(np.argmax(got))
    assert (running.argmax(axis=1) != candidate.argmax(axis=1)).mean() > 0.15
