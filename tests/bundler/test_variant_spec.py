"""Model variants in the spec (issue 27): `when` selectors, first match wins, a catch-all
last; the signed metadata says which blobs belong to which variant and requires 'variants'."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import build
from tests.support.variants import make_variants, variant_spec


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_variants(tmp_path_factory.mktemp("variants"))


def _release(bundle: Path):  # type: ignore[no-untyped-def]
    from airlock.format.bundle import BundleReader
    from keys.release import Release

    with open(bundle, "rb") as f:
        return Release.from_bytes(BundleReader(f).head().release_json)


def test_a_bundle_carries_each_variant_with_its_own_goldens_and_requires_variants(
        keyset: Keys, models: Path, tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, models, [{"when": {"labels": {"npu": "hailo"}}, "file": "int8"},
                                           {"when": {"arch": "aarch64"}, "file": "int8",
                                            "name": "arm"},
                                           {"when": {}, "file": "fp32"}])
    release = _release(build(spec, tmp_path / "v.airlock", [keyset.release_key], check=True))
    assert release.requires == ("variants",)
    int8, arm, fp32 = release.models
    assert [m.variant for m in release.models] == ["int8", "arm", "fp32"]
    assert arm.when == {"arch": ["arm64"]}  # aarch64 is signed as the OCI word
    assert int8.blob == arm.blob != fp32.blob  # one int8 file, carried once
    assert int8.health.outputs != fp32.health.outputs  # goldens per variant
    assert fp32.size > 3 * int8.size
    # First match wins, in signed order.
    assert release.pick_variants({"arch": "arm64", "labels": {"npu": "hailo"}}).models[0].variant \
        == "int8"
    assert release.pick_variants({"arch": "arm64", "labels": {}}).models[0].variant == "arm"
    assert release.pick_variants({"arch": "amd64", "labels": {}}).models == [fp32]


def test_an_agent_that_does_not_know_variants_refuses_the_release(
        keyset: Keys, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keys import features
    from keys.features import UnknownFeatureError

    spec = variant_spec(tmp_path, models, [{"when": {}, "file": "fp32"}])
    bundle = build(spec, tmp_path / "v.airlock", [keyset.release_key])
    monkeypatch.delitem(features.KNOWN_FEATURES, "variants")
    with pytest.raises(UnknownFeatureError, match="requires feature 'variants'"):
        _release(bundle)


@pytest.mark.parametrize(("variants", "words"), [
    ([{"when": {"arch": "arm64"}, "file": "int8"}, {"when": {"arch": "aarch64"}, "file": "fp32"}],
     "variants 'int8' and 'fp32' have the same when"),
    ([{"when": {}, "file": "fp32"}, {"when": {"arch": "arm64"}, "file": "int8"}],
     "variant 'int8' comes after the catch-all variant 'fp32'"),
    ([{"when": {"gpu": {"x": 1}}, "file": "fp32"}], "variants[0].when.gpu"),
])
def test_an_ambiguous_spec_is_refused_at_build_naming_both(
        variants: list[dict[str, object]], words: str, keyset: Keys, models: Path,
        tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, models, variants)
    out = tmp_path / "v.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_the_host_checks_the_variants_it_can_run_and_says_why_it_skips_the_others(
        keyset: Keys, models: Path, tmp_path: Path) -> None:
    import json

    spec = variant_spec(tmp_path, models, [
        {"when": {"providers": ["TensorrtExecutionProvider"]}, "file": "int8", "name": "trt",
         "variant_providers": ["TensorrtExecutionProvider"]},
        {"when": {"arch": "arm64"}, "file": "arm64"},
        {"when": {}, "file": "fp32"}])
    key = keyset.release_key
    r = run_airlock("build", spec, "--key", key, "-o", tmp_path / "v.airlock", "--json")
    assert r.returncode == 0, r.stderr
    checked = {m["name"]: m for m in json.loads(r.stdout)["health"]["models"]}
    assert set(checked) == {"detector (variant trt)", "detector (variant arm64)",
                            "detector (variant fp32)"}
    trt = checked["detector (variant trt)"]
    assert trt["ok"] and trt["p95_ms"] is None  # not run here
    assert "skipped: needs TensorrtExecutionProvider, which this host lacks" in trt["note"]
    # The ones this host can run were really run, each against its own goldens.
    assert checked["detector (variant arm64)"]["p95_ms"] is not None
    assert checked["detector (variant fp32)"]["p95_ms"] is not None
    text = run_airlock("build", spec, "--key", key, "-o", tmp_path / "w.airlock")
    assert "which this host lacks" in text.stdout + text.stderr


def test_signed_metadata_may_omit_only_blobs_that_variants_alone_need(
        keyset: Keys, models: Path, tmp_path: Path) -> None:
    """A bundle leaving out a blob every device needs (a manifest's config, shared by all
    variants here) is refused at parse, on the device as on the host."""
    import dataclasses

    from airlock.errors import FormatError
    from keys.release import Release

    spec = variant_spec(tmp_path, models, [{"when": {"arch": "arm64"}, "file": "arm64"},
                                           {"when": {}, "file": "fp32"}])
    release = _release(build(spec, tmp_path / "v.airlock", [keyset.release_key]))
    arm64 = release.models[0]
    ok = dataclasses.replace(release, omits=tuple(arm64.blob_digests()))
    assert Release.from_metadata(ok.to_metadata()).omits == ok.omits  # signed and read back
    shared = sorted(release.all_digests())
    everyone = [d for d in shared if d not in release.variant_only()]
    assert everyone  # the OCI config blob every variant's manifest names
    bad = dataclasses.replace(release, omits=(everyone[0],))
    with pytest.raises(FormatError, match="not a blob only model variants need"):
        Release.from_metadata(bad.to_metadata())


def test_providers_given_twice_for_a_variant_is_a_spec_error(
        keyset: Keys, models: Path, tmp_path: Path) -> None:
    spec = variant_spec(tmp_path, models, [
        {"when": {}, "file": "fp32", "providers": ["CPUExecutionProvider"],
         "variant_providers": ["CPUExecutionProvider"]}])
    out = tmp_path / "v.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert r.returncode == 2 and "given twice" in r.stderr, r.stderr
    assert not out.exists()
