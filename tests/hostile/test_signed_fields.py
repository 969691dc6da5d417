"""The bundler signs nothing a device would refuse: one rule per signed field, on both sides.

Issue 13, class 7 (and class 4's "a NUL in any signed string is a clean
refusal"). Every bad value is tried twice:

* written into a spec, ``airlock build`` refuses it with exit 2, one line
  naming the field and its line, and writes no bundle;
* put into a release signed by the real key (an attacker holding it, or an
  older bundler), the device's own check (``TrustRoot.verify_release``, as
  ``airlock-agent install`` runs it) refuses it as a FormatError (exit 3)
  naming the same field.

Both answers come from one rule in ``keys/signed_fields.py``. The same bad
releases go through ``airlock verify`` and ``airlock-agent install`` on a
live device as the corpus cases ``signed-*`` (tests/hostile/cases/signed.py).
Here too: YAML the spec refuses before anything walks it (billion laughs,
recursive aliases, deep nesting, tags, non-UTF-8), and YAML that still
works (small aliases, multi-line hooks, nested flags), end to end on a device.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airlock.errors import FormatError
from keys.trust import TrustRoot
from scripts import modelkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json, init_device
from tests.support.keyset import Keys
from tests.support.kit import Kit
from tests.support.spec import spec_doc, write_spec
from tests.support.tarsurgery import sign_dict

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return modelkit.make(tmp_path_factory.mktemp("model") / "m").parent



def _build(keyset: Keys, spec: Path, out: Path) -> Any:
    return run_airlock("build", spec, "--key", keyset.release_key, "-o", out)


def _refused_at_build(r: Any, out: Path, field: str, message: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"field '{field}'" in lines[0] and message in lines[0], lines[0]
    assert field == "(file)" or re.search(r"\.yaml:\d+: field", lines[0]), lines[0]
    assert "\x00" not in r.stderr and "\x1b" not in r.stderr
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def _airlock(d: Doc) -> Any:
    """The part a rule edits: the spec itself, or the signed release's ``airlock`` section."""
    return d.get("airlock", d)


def _health(d: Doc) -> Any:
    return _airlock(d)["models"][0]["health"]


def _set(where: Callable[[Doc], Any], **fields: Any) -> Callable[[Doc], None]:
    return lambda d: where(d).update(fields)


def _top(d: Doc) -> Doc:
    return d


def _deep(levels: int) -> Any:
    v: Any = 1
    for _ in range(levels):
        v = [v]
    return v


def _image(ref: str) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        manifest = "sha256:" + "ab" * 32
        if "airlock" in d:  # the release: point the image at a blob the bundle carries
            manifest = d["airlock"]["models"][0]["manifest"]
            d["airlock"]["images"] = [{"ref": ref, "manifest": manifest,
                                       "media_type": "application/vnd.oci.image.manifest.v1+json"}]
        else:
            d["images"] = [ref]
    return edit


def _twice(d: Doc) -> None:
    models = _airlock(d)["models"]
    models.append(copy.deepcopy(models[0]))


# (id, spec field, release field, edit applied to a spec dict and to the signed `airlock` part,
#  message both sides give). The release field is None where the release cannot carry the value
#  (the edit then applies to the spec only).
RULES: list[tuple[str, str, str | None, Callable[[Doc], None], str]] = [
    ("sequence-beyond-2^53", "sequence", None, _set(_top, sequence=2**53), "between 1 and"),
    ("runs-zero", "models[0].health.runs", "airlock.models[0].health.runs",
     _set(_health, runs=0), "between 1 and 100000"),
    ("runs-huge", "models[0].health.runs", "airlock.models[0].health.runs",
     _set(_health, runs=10**6), "between 1 and 100000"),
    ("timeout-zero", "models[0].health.timeout_s", "airlock.models[0].health.timeout_s",
     _set(_health, timeout_s=0), "must be more than 0"),
    ("rtol-negative", "models[0].health.rtol", "airlock.models[0].health.rtol",
     _set(_health, rtol=-0.5), "must not be negative"),
    ("budget-infinite", "models[0].health.max_p95_ms", None,
     _set(_health, max_p95_ms=float("inf")), "finite number"),
    ("version-nul", "version", "airlock.version", _set(_airlock, version="1.0\x00"),
     "control character (U+0000)"),
    ("version-escape", "version", "airlock.version", _set(_airlock, version="\x1b[2J1.0"),
     "control character (U+001B)"),
    ("hook-nul", "hooks.post_switch", "airlock.hooks.post_switch",
     _set(_airlock, hooks={"post_switch": "systemctl restart app\x00; rm -rf /"}),
     "control character (U+0000)"),
    ("hook-bidi", "hooks.post_switch", "airlock.hooks.post_switch",
     _set(_airlock, hooks={"post_switch": "echo ok \u2066# harmless\u2069 && reboot"}),
     "bidirectional override (U+2066)"),
    ("probe-c1", "hooks.probe", "airlock.hooks.probe",
     _set(_airlock, hooks={"probe": "http://127.0.0.1:8080/\x85healthz"}),
     "control character (U+0085)"),
    ("flag-value-nul", "flags.mode", "airlock.flags.mode", _set(_airlock, flags={"mode": "a\x00"}),
     "control character (U+0000)"),
    ("flag-key-escape", "flags", "airlock.flags", _set(_airlock, flags={"x\x1b[31m": 1}),
     "has a key that holds a control character"),
    ("flag-integer-beyond-2^53", "flags.limits.max", "airlock.flags.limits.max",
     _set(_airlock, flags={"limits": {"max": 2**60}}), "integer beyond"),
    ("flag-too-deep", "flags.tree" + "[0]" * 31, "airlock.flags.tree" + "[0]" * 31,
     _set(_airlock, flags={"tree": _deep(40)}), "nested deeper than 32 levels"),
    ("ring-traversal", "rings[1]", "airlock.rings[1]", _set(_airlock, rings=["canary", "../prod"]),
     "is not a plain name"),
    ("model-name-slash", "models[0].name", "airlock.models[0].name",
     _set(lambda d: _airlock(d)["models"][0], name="a/b"), "is not a plain name"),
    ("model-twice", "models[1]", "airlock.models[1]", _twice, "lists model 'detector' twice"),
    ("provider-newline", "models[0].health.providers[0]",
     "airlock.models[0].health.providers[0]",
     _set(lambda d: _airlock(d)["models"][0]["health"], providers=["CPUExecutionProvider\nX"]),
     "control character (U+000A)"),
    ("image-ref-nul", "images[0]", "airlock.images[0].ref", _image("registry:5000/app\x00:1"),
     "control character (U+0000)"),
]


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_build_and_device_refuse_by_one_rule(
    rule: tuple[str, str, str | None, Callable[[Doc], None], str],
    keyset: Keys, kit: Kit, model_dir: Path, tmp_path: Path,
) -> None:
    _id, spec_field, release_field, edit, message = rule
    doc = spec_doc(model_dir)
    edit(doc)
    spec = write_spec(tmp_path, text=yaml.safe_dump(doc), file_name="airlock.yaml")
    out = tmp_path / "out.airlock"
    _refused_at_build(_build(keyset, spec, out), out, spec_field, message)

    if release_field is None:
        return
    signed = kit.signed()
    edit(signed)
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    with pytest.raises(FormatError) as e:
        trust.verify_release(sign_dict(signed, [kit.release]))
    assert e.value.exit_code == 3
    assert f"release field '{release_field}'" in str(e.value) and message in str(e.value)


def test_device_refuses_out_of_range_sequence(kit: Kit) -> None:
    """The release side of 'sequence-beyond-2^53': the sequence is TUF's version field."""
    signed = kit.signed()
    signed["version"] = 2**53
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    with pytest.raises(FormatError, match=r"release sequence .* between 1 and 9007199254740991"):
        trust.verify_release(sign_dict(signed, [kit.release]))


# YAML that JSON cannot say: refused, not converted (the device could never receive it).
YAML_ONLY = [
    ("flag-inf", "flags: {limit: .inf}", "flags.limit", "finite number"),
    ("flag-nan-in-list", "flags: {weights: [1, .nan]}", "flags.weights[1]", "finite number"),
    ("flag-date", "flags: {since: 2024-01-01}", "flags.since", "a date"),
    ("flag-timestamp", "flags: {at: 2024-01-01T10:00:00Z}", "flags.at", "a date"),
    ("flag-binary", "flags: {blob: !!binary aGVsbG8=}", "flags.blob", "binary data"),
    ("flag-set", "flags: {tags: !!set {a, b}}", "flags.tags", "a set"),
    ("flag-omap", "flags: {order: !!omap [{a: 1}, {b: 2}]}", "flags.order[0]", "list of pairs"),
    ("flag-int-key", "flags: {limits: {1: a, b: c}}", "flags.limits", "key that is not text"),
    ("flag-bool-key", "flags: {yes: 1}", "flags", "key that is not text"),
    ("flag-5000-digits", "flags: {n: 1" + "0" * 5000 + "}", "flags", "4300 digits"),
    ("flag-python-tag", "flags: {x: !!python/object/apply:os.system [id]}", "flags",
     "cannot be read"),
    ("flag-surrogate", 'flags: {x: "\\ud800"}', "flags.x", "lone surrogate"),
    ("version-surrogate", 'version: "1.\\udfff"', "version", "lone surrogate"),
    ("expires-past", "expires: 2001-01-01T00:00:00Z", "expires", "is in the past"),
]


@pytest.mark.parametrize("case", YAML_ONLY, ids=[c[0] for c in YAML_ONLY])
def test_yaml_values_json_cannot_carry(case: tuple[str, str, str, str], keyset: Keys,
                                       model_dir: Path, tmp_path: Path) -> None:
    _id, line, field, message = case
    doc = spec_doc(model_dir)
    key = line.split(":")[0]
    doc.pop(key, None)
    text = yaml.safe_dump(doc) + line + "\n"
    spec = write_spec(tmp_path, text=text, file_name="airlock.yaml")
    out = tmp_path / "out.airlock"
    _refused_at_build(_build(keyset, spec, out), out, field, message)


def _laughs(levels: int) -> str:
    lines = ["flags:", "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines)


# The document itself: bounded before anything composes, constructs or walks it.
SHAPES = [
    ("billion-laughs", _laughs(9), "(yaml)", "aliases expand to more than 1048576"),
    ("recursive-alias", "flags: &loop {self: *loop}", "(yaml)", "refers to no finished anchor"),
    ("nesting-100k", "flags: {x: " + "[" * 100_000 + "]" * 100_000 + "}", "(yaml)",
     "nests collections more than 64 deep"),
    ("mapping-as-key", "? [a, b]\n: 1", "(top)", "field names must be plain words"),
]


@pytest.mark.parametrize("case", SHAPES, ids=[c[0] for c in SHAPES])
def test_yaml_shapes_are_bounded(case: tuple[str, str, str, str], keyset: Keys,
                                 model_dir: Path, tmp_path: Path) -> None:
    _id, text, field, message = case
    doc = spec_doc(model_dir)
    spec = write_spec(tmp_path, text=yaml.safe_dump(doc) + text + "\n", file_name="airlock.yaml")
    out = tmp_path / "out.airlock"
    started = time.monotonic()
    r = _build(keyset, spec, out)
    _refused_at_build(r, out, field, message)
    assert time.monotonic() - started < 20  # a few seconds, interpreter start-up included


def test_spec_that_is_not_utf8(keyset: Keys, model_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "airlock.yaml"
    spec.write_bytes(yaml.safe_dump(spec_doc(model_dir)).encode() + b"flags: {x: \"\xff\xfe\"}\n")
    r = _build(keyset, spec, tmp_path / "out.airlock")
    assert r.returncode == 2 and "field '(file)': is not UTF-8 text" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("file_name, message", [
    ("inputs.npz", "is the name of the golden inputs"),
    ("outputs.npz", "is the name of the golden outputs"),
    ("my model.onnx", "is not a plain name"),
    (".hidden.onnx", "is not a plain name"),
])
def test_model_file_names_the_device_could_not_link(
    file_name: str, message: str, keyset: Keys, model_dir: Path, tmp_path: Path
) -> None:
    """The model file's name is signed and becomes models/NAME/FILE beside the golden data."""
    odd = tmp_path / file_name
    odd.write_bytes((model_dir / "model.onnx").read_bytes())
    doc = spec_doc(model_dir)
    doc["models"][0]["path"] = str(odd)
    spec = write_spec(tmp_path, text=yaml.safe_dump(doc), file_name="airlock.yaml")
    out = tmp_path / "out.airlock"
    _refused_at_build(_build(keyset, spec, out), out, "models[0].path", message)


def test_a_spec_under_an_odd_directory_is_caught_by_the_device_reader(
    keyset: Keys, tmp_path: Path
) -> None:
    """The last line of defence: the build reads its signed bytes back as a device would.

    A local model's source path is signed as the bundler saw it; under a
    directory whose name holds ESC it would be refused by every device.
    """
    odd = tmp_path / "usb\x1b[2Jstick"
    odd.mkdir()
    spec = write_spec(odd)
    out = tmp_path / "out.airlock"
    r = _build(keyset, spec, out)
    assert r.returncode == 2, r.stderr
    assert "devices would refuse this release: release field 'airlock.models[0].source' holds a " \
           "control character (U+001B)" in r.stderr
    assert "\x1b" not in r.stderr and not out.exists()


def test_yaml_that_still_works_end_to_end(keyset: Keys, model_dir: Path, tmp_path: Path) -> None:
    """Small aliases, a multi-line hook, a bare date and nested flags: built, installed, used."""
    text = f"""\
name: vision
version: "2.0"
sequence: 3
expires: 2099-12-31
models:
  - name: detector
    path: {model_dir}/model.onnx
    health: &health
      inputs: {model_dir}/inputs.npz
      outputs: {model_dir}/outputs.npz
      runs: 2
  - name: tracker
    path: {model_dir}/model.onnx
    health: *health
flags:
  thresholds: &t {{low: 0.25, high: 0.75, steps: [1, 2, 3]}}
  copy_of_thresholds: *t
  note: "tab\\there"
hooks:
  post_switch: |
    echo first > "$AIRLOCK_RELEASE_DIR/../../hook-1"
    echo second > "$AIRLOCK_RELEASE_DIR/../../hook-2"
"""
    spec = write_spec(tmp_path, text=text, file_name="airlock.yaml")
    out = tmp_path / "vision-3.airlock"
    r = _build(keyset, spec, out)
    assert r.returncode == 0, r.stderr
    root = init_device(tmp_path / "device", keyset)
    result = agent_json(root, "install", out)
    assert result["active"] == "vision-3"
    assert [m["name"] for m in result["health"]["models"]] == ["detector", "tracker"]
    flags = json.loads((root / "releases" / "vision-3" / "flags.json").read_text())
    assert flags["copy_of_thresholds"] == flags["thresholds"] == {
        "low": 0.25, "high": 0.75, "steps": [1, 2, 3]}
    assert flags["note"] == "tab\there"
    assert (root / "hook-1").read_text() == "first\n"
    assert (root / "hook-2").read_text() == "second\n"
    status = agent_json(root, "status")
    assert status["active"]["id"] == "vision-3"


def test_device_refusal_is_exit_3_never_1(kit: Kit, tmp_path: Path) -> None:
    """A NUL in a signed hook reached the shell after the switch: ValueError, exit 1.

    Now the device refuses it before it reads a blob; nothing is written and
    the refusal is journaled.
    """
    root = tmp_path / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path).returncode == 0
    signed = kit.signed()
    signed["airlock"]["hooks"]["post_switch"] = "echo \x00"
    from tests.support.tarsurgery import bundle

    path = tmp_path / "nul.airlock"
    path.write_bytes(bundle(sign_dict(signed, [kit.release]), kit.files))
    r = run_agent("--root", root, "install", path)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("airlock-agent: error: release field 'airlock.hooks.post_switch'")
    assert list((root / "releases").iterdir()) == []
    history = run_agent("--root", root, "history", "--json")
    assert history.returncode == 0 and "rejected" in history.stdout
