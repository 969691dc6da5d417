"""Sample packs: the device's samples that matter go home signed, within a budget, and are checked.

A device refuses a challenger by its shadow check; ``airlock-agent samples
export`` then writes the sample files holding the disagreements first, inside
the budget, with a manifest signed by the device key; ``airlock report ingest``
at headquarters stores a pack only when its signature is the enrolled key's
and every file is the one listed. A spec that forbids export is obeyed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keys.device import SAMPLES_TYPE, verify_document
from scripts import evalkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json, init_device
from tests.support.evalsets import eval_model
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

METRICS = {"accuracy": {"min": 0.92}}


def _bundle(tmp_path: Path, keyset: Keys, sequence: int, perturb: float,
            **fields: Any) -> Path:
    model = eval_model(tmp_path / f"model-{sequence}", perturb=perturb, metrics=METRICS)
    model.update(fields)
    spec = write_spec(tmp_path, sequence=sequence, version=f"1.{sequence}", models=[model])
    return build(spec, tmp_path / f"vision-{sequence}.airlock", [keyset.release_key])


def _refused_challenger(tmp_path: Path, keyset: Keys) -> Path:
    root = init_device(tmp_path / "device", keyset)
    agent_json(root, "install", _bundle(tmp_path, keyset, 1, 0.0))
    evalkit.write_site_samples(root / "samples" / "classifier", 500, shift=2.0)
    r = run_agent("--root", root, "install", _bundle(
        tmp_path, keyset, 2, 0.15, shadow={"samples": 500, "min_agreement": 0.97}))
    assert r.returncode == 4 and "worst disagreements" in r.stderr
    return root


def test_export_puts_disagreements_first_within_budget_and_ingest_checks_it(
        tmp_path: Path, keyset: Keys) -> None:
    root = _refused_challenger(tmp_path, keyset)
    pack = tmp_path / "stick" / "dev.samples"
    budget = 24 * 1024
    result = agent_json(root, "samples", "export", "--budget", "24KiB", "-o", pack)
    files = result["files"]
    on_disk = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
    assert 0 < len(files) < 10 and result["left_out"] == 10 - len(files)
    assert on_disk <= budget, on_disk
    # The files holding the shadow check's disagreements come first, with both models' word.
    assert files[0]["why"] == "disagreement"
    said = files[0]["disagreements"][0]
    assert said["release"] == "vision-2" and said["against"] == "vision-1"
    assert said["sample"].startswith(files[0]["file"] + "[")
    assert isinstance(said["running"], int) and isinstance(said["candidate"], int)
    manifest = (pack / "samples.manifest.json").read_bytes()
    body = verify_document(manifest, SAMPLES_TYPE).body
    assert body["device_id"] == "test-dev" and [f["file"] for f in body["files"]] == \
        [f["file"] for f in files]
    assert (pack / "classifier" / files[0]["file"]).read_bytes() == \
        (root / "samples" / "classifier" / files[0]["file"]).read_bytes()

    fleet = tmp_path / "fleet"
    # Not enrolled yet: refused, nothing stored.
    r = run_airlock("report", "ingest", pack, "--fleet", fleet)
    assert r.returncode == 3 and "not enrolled" in r.stderr
    assert not (fleet / "samples").exists()
    r = run_airlock("report", "enroll", root / "device.pub", "--device-id", "test-dev",
                    "--fleet", fleet)
    assert r.returncode == 0, r.stderr
    r = run_airlock("report", "ingest", pack, "--fleet", fleet, "--json")
    assert r.returncode == 0, r.stderr
    (stored,) = json.loads(r.stdout)["samples"]
    assert stored["device_id"] == "test-dev" and stored["files"] == len(files)
    assert (Path(stored["stored"]) / "classifier" / files[0]["file"]).read_bytes() == \
        (pack / "classifier" / files[0]["file"]).read_bytes()

    # A sample altered after export: the pack is refused whole.
    victim = pack / "classifier" / files[-1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    before = sorted(p for p in (fleet / "samples").rglob("*"))
    r = run_airlock("report", "ingest", pack, "--fleet", fleet)
    assert r.returncode == 3
    assert f"classifier/{files[-1]['file']} is not the file the signed manifest lists" in r.stderr
    assert sorted(p for p in (fleet / "samples").rglob("*")) == before


def test_a_spec_that_forbids_export_is_obeyed(tmp_path: Path, keyset: Keys) -> None:
    root = init_device(tmp_path / "device", keyset)
    agent_json(root, "install", _bundle(tmp_path, keyset, 1, 0.0, samples={"export": False}))
    evalkit.write_site_samples(root / "samples" / "classifier", 100)
    pack = tmp_path / "pack"
    r = run_agent("--root", root, "samples", "export", "-o", pack)
    assert r.returncode == 3, r.stderr
    assert ("the signed spec of vision-1 forbids exporting the samples of model 'classifier' "
            "(samples: {export: false}); they stay on this device") in r.stderr
    assert not pack.exists() or not any(pack.iterdir())
