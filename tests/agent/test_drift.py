"""Drift: PSI per input feature against the reference shipped in the bundle, on a real device."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from airlock.errors import FormatError
from airlock.quality.drift import feature_psi, features, load_sample, psi
from tests.support.cli import run_airlock
from tests.support.device import agent_json, assert_consistent, init_device
from tests.support.keyset import Keys
from tests.support.spec import build, write_spec

RNG = np.random.default_rng(7)
REFERENCE = RNG.standard_normal((1000, 16)).astype(np.float32)


def test_psi_is_zero_for_the_reference_itself_and_high_for_a_shifted_sample() -> None:
    same = feature_psi("x", REFERENCE, REFERENCE)
    assert len(same) == 16 and max(same.values()) == 0.0
    fresh = feature_psi("x", REFERENCE, RNG.standard_normal((1000, 16)))
    assert max(fresh.values()) < 0.1  # a new draw from the same distribution
    shifted = feature_psi("x", REFERENCE, RNG.standard_normal((1000, 16)) + 1.0)
    assert min(shifted.values()) > 0.5
    # Only the drifted column stands out.
    one = RNG.standard_normal((1000, 16))
    one[:, 3] = one[:, 3] * 3
    scores = feature_psi("x", REFERENCE, one)
    assert max(scores, key=lambda k: scores[k]) == "x[3]" and scores["x[3]"] > 0.2


def test_psi_bins_by_reference_quantiles_and_ignores_non_finite() -> None:
    ref = np.repeat([0.0, 1.0], 500)  # two distinct values: two bins, not ten
    assert psi(ref, ref) == 0.0
    assert psi(ref, np.ones(100)) == pytest.approx((1 - 0.5) * np.log(1 / 0.5)
                                                   + (1e-4 - 0.5) * np.log(1e-4 / 0.5))
    assert psi(ref, [np.nan, np.inf, 0.0, 1.0]) == 0.0
    assert psi(ref, [np.nan]) is None


def test_multi_dimensional_inputs_are_summarised_per_channel_and_grouped() -> None:
    assert list(features("v", np.zeros(5))) == ["v"]
    images = features("img", RNG.random((20, 3, 8, 8)))
    assert list(images) == ["img[c=0]", "img[c=1]", "img[c=2]"]
    assert images["img[c=1]"].shape == (20,)
    wide = features("w", RNG.random((20, 300)))
    assert len(wide) == 64 and "w[0:5]" in wide
    with pytest.raises(FormatError, match="numbers"):
        features("s", np.array(["a", "b"]))


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_sample_files_are_read_without_pickles_or_lying_headers(tmp_path: Path) -> None:
    good = load_sample(_npz(tmp_path / "good.npz", x=REFERENCE))
    assert good["x"].shape == (1000, 16)
    with pytest.raises(FormatError, match="not plain numbers"):
        load_sample(_npz(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object)))
    # A header that claims far more than the member holds is refused before allocation.
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (4_000_000_000_000,)})
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue() + bytes(16))
    with pytest.raises(FormatError, match="stated size"):
        load_sample(tmp_path / "liar.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(FormatError, match="not a readable"):
        load_sample(tmp_path / "text.npz")


def test_build_refuses_an_unusable_reference_naming_the_field(tmp_path: Path,
                                                               keyset: Keys) -> None:
    _npz(tmp_path / "ref.npz", x=np.array(["a", "b"]))
    spec = write_spec(tmp_path, health={"reference": "ref.npz"})
    p = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "b.airlock")
    assert p.returncode == 2, p.stderr
    assert "models[0].health.reference" in p.stderr and "Traceback" not in p.stderr


def test_device_reports_drift_of_dropped_samples_in_status(tmp_path: Path, keyset: Keys) -> None:
    _npz(tmp_path / "ref.npz", x=REFERENCE)
    spec = write_spec(tmp_path, health={"reference": "ref.npz", "drift_warn": 0.3})
    bundle = build(spec, tmp_path / "v1.airlock", [keyset.release_key])
    root = init_device(tmp_path / "dev", keyset)
    agent_json(root, "install", bundle)
    rdir = root / "releases" / "vision-1" / "models" / "detector"
    assert np.array_equal(np.load(rdir / "reference.npz")["x"], REFERENCE)
    assert_consistent(root)

    drift = agent_json(root, "status")["drift"]["models"]["detector"]
    assert drift["psi"] is None and "no samples" in drift["note"]

    samples = root / "samples" / "detector"
    samples.mkdir(parents=True)
    _npz(samples / "a.npz", x=RNG.standard_normal((400, 16)).astype(np.float32))
    _npz(samples / ".b.npz.tmp", x=np.full((400, 16), 9.0, np.float32))  # still being written
    drift = agent_json(root, "status")["drift"]["models"]["detector"]
    assert drift["rows"] == 400 and drift["psi"] < 0.3 and drift["warn"] is False
    assert drift["threshold"] == 0.3 and set(drift["inputs"]) == {"x"}

    _npz(samples / "c.npz", x=(RNG.standard_normal((400, 16)) + 1.5).astype(np.float32))
    drift = agent_json(root, "status")["drift"]["models"]["detector"]
    assert drift["rows"] == 800 and drift["warn"] is True and drift["psi"] > 0.3
    assert drift["inputs"]["x"]["feature"].startswith("x[")
