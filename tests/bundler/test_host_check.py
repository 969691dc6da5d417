"""The device's health check at the desk: ``airlock build`` and ``airlock check`` run it before signing.

Real models (scripts/modelkit.py), real ONNX Runtime in the real isolated
child, the real command line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.cli import run_agent, run_airlock
from tests.support.device import init_device
from tests.support.keyset import Keys
from tests.support.spec import write_spec


def _build(spec: Path, keys: Keys, out: Path, *extra: object) -> tuple[int, str, str]:
    r = run_airlock("build", spec, "--key", keys.release_key, "-o", out, *extra)
    assert "Traceback" not in r.stderr
    return r.returncode, r.stdout, r.stderr.strip()


def _nothing_written(out: Path) -> bool:
    return not any(p.name.startswith(out.name) for p in out.parent.iterdir())


def test_wrong_goldens_are_refused_at_build_with_the_agents_words(keyset: Keys,
                                                                   tmp_path: Path) -> None:
    spec = write_spec(tmp_path, wrong=True)
    out = tmp_path / "bad.airlock"
    code, _, err = _build(spec, keyset, out)
    assert code == 4, err
    assert len(err.splitlines()) == 1
    assert "health check of model 'detector' failed: output 'y' differs: worst element" in err
    assert "nothing was signed or written" in err
    assert _nothing_written(out)

    # Built anyway, the device refuses it in the very same words: one check, not two.
    code, _, _ = _build(spec, keyset, out, "--no-check")
    assert code == 0
    host_reason = err.split("error: ", 1)[1].split("; nothing was signed")[0]
    root = init_device(tmp_path / "device", keyset)
    r = run_agent("--root", root, "install", out)
    assert r.returncode == 4
    assert host_reason in r.stderr


def test_a_model_onnx_runtime_cannot_load_is_refused_and_no_check_builds_it(
        keyset: Keys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, junk=True)
    out = tmp_path / "junk.airlock"
    code, _, err = _build(spec, keyset, out)
    assert code == 4, err
    assert "model 'detector' failed: ONNX Runtime cannot load the model" in err
    assert "NoSuchOperator" in err
    assert _nothing_written(out)

    code, stdout, err = _build(spec, keyset, out, "--no-check")
    assert code == 0, err
    assert out.is_file()
    assert "health check: SKIPPED (--no-check)" in stdout
    code, stdout, _ = _build(spec, keyset, tmp_path / "again.airlock", "--no-check", "--json")
    assert json.loads(stdout)["checked"] is False


def test_bytes_that_are_no_model_are_a_spec_error_naming_the_field(keyset: Keys,
                                                                    tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    (tmp_path / "model-vision-1" / "model.onnx").write_bytes(b"this is not a model\n" * 10)
    code, _, err = _build(spec, keyset, tmp_path / "x.airlock")
    assert code == 2
    assert re.search(r"vision-1\.yaml:\d+: field 'models\[0\]\.path': is not an ONNX model", err)


def test_budgets_are_reported_on_the_host_and_enforced_only_when_asked(keyset: Keys,
                                                                        tmp_path: Path) -> None:
    # No real model answers in a microsecond: the latency budget is missed on any host.
    spec = write_spec(tmp_path, health={"max_p95_ms": 0.0001})
    out = tmp_path / "v1.airlock"
    code, stdout, err = _build(spec, keyset, out, "--json")
    assert code == 0, err
    model = json.loads(stdout)["health"]["models"][0]
    assert model["ok"] and model["p95_ms"] > 0 and model["peak_rss_mb"] > 0
    assert model["over_budget"].startswith("p95 latency ")
    assert "> max_p95_ms 0.0001" in model["over_budget"]
    code, stdout, _ = _build(spec, keyset, tmp_path / "v1b.airlock")
    assert "over budget on this host (not enforced; --enforce-budgets): p95 latency" in stdout

    strict = tmp_path / "strict.airlock"
    code, _, err = _build(spec, keyset, strict, "--enforce-budgets")
    assert code == 4
    assert "model 'detector' failed: p95 latency" in err
    assert _nothing_written(strict)


def test_check_runs_only_the_check(keyset: Keys, tmp_path: Path) -> None:
    good = write_spec(tmp_path, sequence=1)
    r = run_airlock("check", good, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["models"][0]["name"] == "detector"
    assert report["models"][0]["worst"]["y"]["ok"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == ["", ".yaml"]  # nothing signed

    bad = write_spec(tmp_path, sequence=2, wrong=True)
    r = run_airlock("check", bad)
    assert r.returncode == 4
    assert "health check of model detector: FAILED: output 'y' differs" in r.stdout
    assert r.stderr.strip().startswith("airlock: error: health check of model 'detector' failed")


def test_a_hanging_model_is_killed_at_its_time_limit_on_the_host(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, hang=True, timeout_s=2)
    r = run_airlock("check", spec, timeout=60)
    assert r.returncode == 4
    assert "failed: timed out after 2 s (killed)" in r.stderr
