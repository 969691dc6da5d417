"""`airlock new DIR` starts a project whose spec passes `airlock check` as written."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from bundler.build.starter import MODEL
from scripts import modelkit
from tests.support.cli import run_airlock


def test_new_project_passes_check_and_is_never_overwritten(tmp_path: Path) -> None:
    p = run_airlock("new", tmp_path / "vision", "--json")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    spec = Path(made["spec"])
    assert spec == tmp_path / "vision" / "airlock.yaml"
    assert "name: vision " in spec.read_text()

    p = run_airlock("check", spec, "--json")
    assert p.returncode == 0, p.stderr
    assert [(m["name"], m["ok"]) for m in json.loads(p.stdout)["models"]] == [("model", True)]

    # A second `new` keeps the user's edits: one line, exit 5, nothing rewritten.
    spec.write_text(spec.read_text().replace("sequence: 1", "sequence: 7"))
    p = run_airlock("new", tmp_path / "vision")
    assert p.returncode == 5 and "already exists" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "sequence: 7" in spec.read_text()


def test_a_directory_that_is_no_release_name_gets_starter(tmp_path: Path) -> None:
    p = run_airlock("new", tmp_path / "my project")
    assert p.returncode == 0, p.stderr
    assert "name: starter " in (tmp_path / "my project" / "airlock.yaml").read_text()
    assert "next: airlock check" in p.stdout


def test_the_shipped_model_is_modelkits_scale_model() -> None:
    # How starter_files/model.onnx was made, kept true: scale_model(2.0) of scripts/modelkit.py.
    assert onnx.load_from_string(MODEL.read_bytes()) == modelkit.scale_model(2.0)
