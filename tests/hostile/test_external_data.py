"""ONNX external data: shipped beside the model, loaded from the release directory only.

Issue 13, class 7. A model over 2 GB (protobuf's limit) keeps its weights in
files beside it that the model names. The bundler ships each as a layer of
the model artifact and signs its name and digest; the agent links it beside
the model in ``models/NAME/``; ONNX Runtime reads it from there and refuses
any location that leaves the directory. What cannot ship is refused at
build, exit 2 naming the spec field: a missing or short file, a location
with a directory, ``..`` or an absolute path, a name taken by the golden
data. Signed releases that name such files are refused by devices (corpus
cases ``signed-file-*``); a signed model that reaches for a file outside its
directory fails its health check on the device (exit 4).
"""

from __future__ import annotations

import json
import os
import tarfile
from functools import partial
from pathlib import Path

import pytest
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import set_external_data

from scripts import modelkit, ocikit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json, assert_consistent, init_device
from tests.support.keyset import Keys
from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.registry import need_tools
from tests.support.spec import write_spec
from tests.support.tarsurgery import bundle, sign_dict


def _entry(model_dir: Path) -> dict[str, object]:
    return {"name": "detector", "path": f"{model_dir.name}/model.onnx",
            "health": {"inputs": f"{model_dir.name}/inputs.npz",
                       "outputs": f"{model_dir.name}/outputs.npz", "runs": 3}}


def _external_model(model_dir: Path, location: str) -> bytes:
    """modelkit's model with its weight 'k' read from ``location``; golden data computed first.

    Written as raw protobuf: onnx.save itself refuses to write data outside the directory.
    """
    modelkit.make(model_dir)
    model = modelkit.scale_model(2.0)
    k = model.graph.initializer[0]
    raw = numpy_helper.to_array(k).tobytes()
    k.ClearField("float_data")
    k.raw_data = raw  # set_external_data wants it; the weights then leave the file
    set_external_data(k, location=location, offset=0, length=len(raw))
    k.ClearField("raw_data")
    k.data_location = TensorProto.EXTERNAL
    (model_dir / "model.onnx").write_bytes(model.SerializeToString())
    return raw


def _build(keyset: Keys, directory: Path, model_dir: Path) -> tuple[int, str, Path]:
    spec = write_spec(directory, models=[_entry(model_dir)])
    out = directory / "out.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert "Traceback" not in r.stderr
    return r.returncode, r.stderr.strip(), out


def test_external_data_ships_and_the_model_runs_on_a_device(keyset: Keys, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    modelkit.make(model_dir, external=True)
    data = (model_dir / "model.onnx.data").read_bytes()
    code, err, out = _build(keyset, tmp_path, model_dir)
    assert code == 0, err

    # The data file is a layer of the model's OCI artifact, titled with the name the model uses.
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    release = json.loads(files["airlock/release.json"])["signed"]["airlock"]
    (model,) = release["models"]
    digest = model["data"]["model.onnx.data"]
    assert files["blobs/sha256/" + digest[7:]] == data
    manifest = json.loads(files["blobs/sha256/" + model["manifest"][7:]])
    titles = [(layer["annotations"]["org.opencontainers.image.title"], layer["mediaType"])
              for layer in manifest["layers"]]
    assert ("model.onnx.data", "application/vnd.airlock.model.external-data.v1") in titles
    inspect = run_airlock("inspect", out, "--json")
    assert json.loads(inspect.stdout)["models"][0]["data"] == ["model.onnx.data"]

    root = init_device(tmp_path / "device", keyset)
    result = agent_json(root, "install", out)
    assert result["active"] == "vision-1" and result["health"]["ok"]
    mdir = root / "releases" / "vision-1" / "models" / "detector"
    # Linked from the store beside the model, as ONNX Runtime expects it.
    assert (mdir / "model.onnx.data").stat().st_ino == (
        root / "blobs" / "sha256" / digest[7:]).stat().st_ino
    assert_consistent(root)
    assert run_agent("--root", root, "fsck").returncode == 0
    check = run_agent("--root", root, "check")
    assert check.returncode == 0, check.stderr

    # fsck notices when the data file goes missing, like any other model file.
    (mdir / "model.onnx.data").unlink()
    fsck = run_agent("--root", root, "fsck")
    assert fsck.returncode != 0 and "models/detector/model.onnx.data is missing" in fsck.stdout


def test_missing_external_data_is_refused_at_build(keyset: Keys, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    modelkit.make(model_dir, external=True)
    (model_dir / "model.onnx.data").unlink()
    code, err, out = _build(keyset, tmp_path, model_dir)
    assert code == 2 and "field 'models[0].path'" in err
    assert "needs the external data file 'model.onnx.data' beside it" in err
    assert not out.exists()


def test_short_external_data_is_refused_at_build(keyset: Keys, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    modelkit.make(model_dir, external=True)
    data = model_dir / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    code, err, _ = _build(keyset, tmp_path, model_dir)
    assert code == 2 and "reads 128 bytes from external data file 'model.onnx.data'" in err


@pytest.mark.parametrize("location, message", [
    ("../weights.bin", "is not a plain name"),
    ("sub/weights.bin", "is not a plain name"),
    ("/etc/hostname", "is not a plain name"),
    ("inputs.npz", "is the name of the golden inputs"),
    ("model.onnx", "is the name of the model file"),
])
def test_external_data_that_cannot_ship_is_refused_at_build(
    location: str, message: str, keyset: Keys, tmp_path: Path
) -> None:
    model_dir = tmp_path / "m"
    _external_model(model_dir, location)
    code, err, out = _build(keyset, tmp_path, model_dir)
    assert code == 2, err
    assert "field 'models[0].path'" in err and "tensor 'k' has external data" in err
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_signed_model_reaching_outside_its_directory_fails_its_check(
    kit: Kit, tmp_path: Path
) -> None:
    """A model signed by a key holder that names ``../../../../secret.bin`` as its data.

    The file is there, with the very bytes the model needs: if anything
    followed the path the check would pass. ONNX Runtime refuses the escape;
    the install fails with exit 4 and the running release stays.
    """
    site = tmp_path / "site"
    root = site / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path).returncode == 0
    active = tmp_path / "active.airlock"
    active.write_bytes(kit.active)
    assert run_agent("--root", root, "install", active).returncode == 0

    # models/detector -> models -> vision-5 -> releases -> root -> site
    raw = _external_model(tmp_path / "evil", "../../../../../secret.bin")
    (site / "secret.bin").write_bytes(raw)
    path, _ = kit.blob("model")
    signed, files = kit.rewrite_blob(path, (tmp_path / "evil" / "model.onnx").read_bytes())
    evil = tmp_path / "evil.airlock"
    evil.write_bytes(bundle(sign_dict(signed, [kit.release]), files))

    r = run_agent("--root", root, "install", evil)
    assert r.returncode == 4, r.stderr
    assert "health check of model 'detector' failed: ONNX Runtime cannot load the model" in r.stderr
    assert "escapes model directory" in r.stderr
    status = agent_json(root, "status")
    assert status["active"]["id"] == f"vision-{ACTIVE_SEQUENCE}"


def test_the_model_scan_reads_what_onnx_reads(tmp_path: Path) -> None:
    """bundler.build.model_check scans the protobuf without onnx; it must agree with onnx itself.

    Its field numbers are onnx.proto's; the external data of a Loop body (a subgraph)
    counts like the main graph's.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    from bundler.build.model_check import _Scan, read_model

    def number(message: type, name: str) -> int:
        return int(message.DESCRIPTOR.fields_by_name[name].number)  # type: ignore[attr-defined]

    m, g, a, t = onnx.ModelProto, onnx.GraphProto, onnx.AttributeProto, onnx.TensorProto
    fields: dict[str, list[tuple[type, str]]] = {
        "MODEL_GRAPH": [(m, "graph")], "MODEL_FUNCTIONS": [(m, "functions")],
        "GRAPH_NODE": [(g, "node")], "GRAPH_INIT": [(g, "initializer")],
        "GRAPH_SPARSE": [(g, "sparse_initializer")], "GRAPH_INPUT": [(g, "input")],
        "GRAPH_OUTPUT": [(g, "output")], "NODE_ATTR": [(onnx.NodeProto, "attribute")],
        "FUNCTION_NODE": [(onnx.FunctionProto, "node")],
        "ATTR_TENSORS": [(a, "t"), (a, "tensors")], "ATTR_GRAPHS": [(a, "g"), (a, "graphs")],
        "ATTR_SPARSE": [(a, "sparse_tensor"), (a, "sparse_tensors")],
        "SPARSE_PARTS": [(onnx.SparseTensorProto, "values"), (onnx.SparseTensorProto, "indices")],
        "VALUE_NAME": [(onnx.ValueInfoProto, "name")], "T_DIMS": [(t, "dims")],
        "T_TYPE": [(t, "data_type")], "T_NAME": [(t, "name")],
        "T_EXTERNAL": [(t, "external_data")], "T_LOCATION": [(t, "data_location")],
        "ENTRY_KEY": [(onnx.StringStringEntryProto, "key")],
        "ENTRY_VALUE": [(onnx.StringStringEntryProto, "value")],
    }
    for attr, of in fields.items():
        numbers = tuple(number(message, name) for message, name in of)
        ours = getattr(_Scan, attr)
        assert numbers == (ours if isinstance(ours, tuple) else (ours,)), attr
    assert t.EXTERNAL == _Scan.EXTERNAL

    for name, model in (("scale", modelkit.scale_model(2.0, pad_mb=1)),
                        ("loop", modelkit.hang_model())):
        for external in (False, True):
            path = tmp_path / f"{name}-{external}" / "model.onnx"
            path.parent.mkdir()
            modelkit.save(model, path, external=external)
            facts = read_model(partial(path.open, "rb"), "model.onnx")
            loaded = onnx.load(str(path), load_external_data=False)
            inits = {i.name for i in loaded.graph.initializer}
            assert facts.inputs == {i.name for i in loaded.graph.input} - inits
            assert facts.outputs == {o.name for o in loaded.graph.output}
            tensors = [t for t in _get_all_tensors(loaded) if uses_external_data(t)]
            assert len(tensors) == (3 if external else 0)
            if external:
                infos = [ExternalDataInfo(t) for t in tensors]
                assert facts.needs == {"model.onnx.data": max(i.offset + i.length for i in infos)}
                assert facts.needs["model.onnx.data"] == (path.parent / "model.onnx.data"
                                                          ).stat().st_size


@pytest.mark.parametrize("data", [b"", b"not a model at all", b"\x0a\xff\xff\xff\xff\x0f"],
                         ids=["empty", "text", "truncated-field"])
def test_a_file_that_is_not_an_onnx_model_is_refused_at_build(
    data: bytes, keyset: Keys, tmp_path: Path
) -> None:
    model_dir = tmp_path / "m"
    modelkit.make(model_dir)
    (model_dir / "model.onnx").write_bytes(data)
    code, err, out = _build(keyset, tmp_path, model_dir)
    assert code == 2 and "field 'models[0].path'" in err, err
    assert "is not an ONNX model" in err or "declares no outputs" in err
    assert not out.exists()


@pytest.mark.integration
def test_registry_model_ships_its_external_data(keyset: Keys, tmp_path: Path) -> None:
    """``oras push model.onnx model.onnx.data ...``: the data layer is found by its title."""
    need_tools("docker-registry")
    model_dir = tmp_path / "m"
    modelkit.make(model_dir, external=True)
    with ocikit.Registry.start(tmp_path / "registry") as reg:
        ocikit.push_model(reg.host, "models/big:1", [model_dir / "model.onnx",
                                                    model_dir / "model.onnx.data",
                                                    model_dir / "inputs.npz",
                                                    model_dir / "outputs.npz"])
        ocikit.push_model(reg.host, "models/big:no-data", [model_dir / "model.onnx",
                                                          model_dir / "inputs.npz",
                                                          model_dir / "outputs.npz"])
        for tag, expect in (("1", 0), ("no-data", 2)):
            spec = write_spec(tmp_path, name=f"big-{tag}", models=[{
                "name": "big", "ref": f"oci://{reg.host}/models/big:{tag}",
                "health": {"inputs": "inputs.npz", "outputs": "outputs.npz", "runs": 2}}])
            out = tmp_path / f"big-{tag}.airlock"
            r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out,
                            "--insecure", reg.host, "--cache", tmp_path / "cache")
            assert r.returncode == expect, r.stderr
    assert "field 'models[0].ref': needs the external data file 'model.onnx.data'" in r.stderr
    root = init_device(tmp_path / "device", keyset)
    result = agent_json(root, "install", tmp_path / "big-1.airlock")
    assert result["health"]["ok"]
    assert os.path.isfile(root / "current" / "models" / "big" / "model.onnx.data")
