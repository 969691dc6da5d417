"""Samples an application drops, counted against the model's input contract on the device."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from agent.layout import Layout
from agent.observe.input_contract import ContractWatch
from agent.observe.metrics import Observed, metrics_registry
from tests.support.cli import run_agent
from tests.support.device import agent_json, init_device
from tests.support.evalsets import eval_model
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

CONTRACT = {"x": {"dtype": "float32", "shape": ["batch", 16], "min": -10, "max": 10}}


def test_violations_in_dropped_samples_are_counted(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    model = eval_model(tmp_path / "m", samples=500, contract=CONTRACT)
    bundle = build(write_spec(tmp_path, models=[model]), tmp_path / "v1.airlock",
                   [keyset.release_key])
    agent_json(root, "install", bundle)
    assert agent_json(root, "status")["inputs"]["classifier"]["files"] == 0

    folder = root / "samples" / "classifier"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    good = rng.uniform(-5, 5, (100, 16)).astype(np.float32)
    np.savez(folder / "a-good.npz", x=good)
    bad = good.copy()
    bad[3, 4], bad[50, 0], bad[60, 1] = 11.0, 12.5, np.nan
    np.savez(folder / "b-bad.npz", x=bad)
    np.savez(folder / "c-wide.npz", x=np.zeros((4, 8), np.float32))      # wrong shape
    np.savez(folder / "d-double.npz", x=np.zeros((4, 16), np.float64))  # wrong dtype
    np.savez(folder / ".e-half-written.npz", x=bad)                      # still being written
    os.symlink(folder / "b-bad.npz", folder / "f-link.npz")              # never followed
    (folder / "g-junk.npz").write_bytes(b"not a zip")

    seen = agent_json(root, "status")["inputs"]["classifier"]
    assert seen["files"] == 5 and seen["rows"] == 208
    assert seen["violations"] == {"x": {"max": 2, "nan": 1, "shape": 1, "dtype": 1}}
    assert seen["total"] == 5
    assert ("input 'x': 2 value(s) > max 10 (first: b-bad.npz row 3, x[3, 4] = 11.0)"
            in seen["first"])
    assert seen["unreadable"] == ["g-junk.npz: is not an .npz archive: File is not a zip file"]
    human = run_agent("--root", root, "status").stdout
    (line,) = [ln for ln in human.splitlines() if ln.startswith("inputs")]
    assert line.startswith("inputs    classifier: 5 contract violation(s) in 208 rows of 5 "
                           "sample file(s) in samples/classifier: ")
    assert "x max 2" in line and "x nan 1" in line and "x dtype 1" in line
    assert line.endswith("1 unreadable (first: g-junk.npz: is not an .npz archive: "
                         "File is not a zip file)")

    checked = agent_json(root, "check")
    assert checked["inputs"]["classifier"]["violations"] == seen["violations"]

    # serve counts them for /metrics, again only when the sample files change.
    layout = Layout(root)
    watch = ContractWatch(layout)
    first = watch.update()
    assert first["models"]["classifier"]["violations"] == seen["violations"]
    assert watch.update()["models"]["classifier"] is first["models"]["classifier"]
    registry = metrics_registry(layout, Observed(inputs=first))
    assert registry.get_sample_value("airlock_model_input_violations", {
        "release": "vision-1", "model": "classifier", "input": "x", "rule": "max"}) == 2
    assert registry.get_sample_value("airlock_model_input_rows", {
        "release": "vision-1", "model": "classifier"}) == 208
    (folder / "b-bad.npz").unlink()
    assert watch.update()["models"]["classifier"]["violations"] == {
        "x": {"shape": 1, "dtype": 1}}


def test_a_fixed_batch_model_takes_stacked_references_and_samples_under_its_own_shape(
        tmp_path: Path, keyset: Keys) -> None:
    # The test model is a batch-1 export: x is [1, 16]. Its natural contract is its own shape.
    fixed = {"x": {"dtype": "float32", "shape": [1, 16], "min": -10, "max": 10}}
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "ref.npz", x=rng.standard_normal((2000, 16)).astype(np.float32))
    spec = write_spec(tmp_path, health={"reference": "ref.npz"})

    doc = yaml.safe_load(spec.read_text())
    doc["models"][0]["inputs_contract"] = fixed
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    bundle = build(spec, tmp_path / "v1.airlock", [keyset.release_key])  # exit 0, not exit 2
    root = init_device(tmp_path / "device", keyset)
    agent_json(root, "install", bundle)
    folder = root / "samples" / "detector"
    folder.mkdir(parents=True)
    samples = rng.standard_normal((200, 16)).astype(np.float32)
    samples[5, 2] = 11.0
    np.savez(folder / "today.npz", x=samples)
    seen = agent_json(root, "status")["inputs"]["detector"]
    # 200 stacked samples are not "dimension 0 is 200, the contract says 1"; values still count.
    assert seen["rows"] == 200 and seen["violations"] == {"x": {"max": 1}}
    # A wrong feature width is still a shape violation.
    np.savez(folder / "wide.npz", x=np.zeros((4, 8), np.float32))
    assert agent_json(root, "status")["inputs"]["detector"]["violations"]["x"]["shape"] == 1
