"""Device facts (issue 27): probed at init and each start, labels and stated facts from the
operator, shown by status and carried in the signed inventory."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from tests.support.cli import run_agent
from tests.support.device import agent_json
from tests.support.keyset import Keys

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def test_init_probes_the_device_and_keeps_the_operators_labels(keyset: Keys,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "device"
    r = run_agent("--root", root, "init", "--trust", keyset.trust, "--label", "site=north",
                  "--label", "npu=hailo")
    assert r.returncode == 0, r.stderr
    assert "labels npu=hailo site=north" in r.stdout
    record = json.loads((root / "facts.json").read_text())
    probed = record["probed"]
    assert probed["arch"] == _ARCH  # OCI words, never x86_64 / aarch64
    assert probed["os"] == "linux" and probed["python"] == platform.python_version()
    assert probed["ram_mb"] > 100 and "CPUExecutionProvider" in probed["providers"]
    assert probed["onnxruntime"]
    assert record["labels"] == {"npu": "hailo", "site": "north"}

    status = agent_json(root, "status")
    assert status["facts"]["labels"] == {"npu": "hailo", "site": "north"}
    text = run_agent("--root", root, "status").stdout
    assert f"facts     {_ARCH}, linux" in text and "labels npu=hailo site=north" in text


def test_config_sets_labels_and_stated_facts_which_win_over_the_probe(keyset: Keys,
                                                                      tmp_path: Path) -> None:
    root = tmp_path / "device"
    assert run_agent("--root", root, "init", "--trust", keyset.trust).returncode == 0
    changed = agent_json(root, "config", "--label", "npu=hailo", "--fact", "cuda_capability=8.7",
                         "--fact", "arch=aarch64")
    assert changed["changed"] == ["label npu: (none) -> hailo",
                                  "fact cuda_capability: (none) -> 8.7",
                                  "fact arch: (none) -> aarch64"]
    assert changed["facts"]["stated"] == {"arch": "aarch64", "cuda_capability": "8.7"}
    from agent.facts import effective, load_facts
    from agent.layout import Layout

    facts = effective(load_facts(Layout(root)) or {})
    assert facts["arch"] == "arm64" and facts["cuda_capability"] == "8.7"  # alias resolved
    assert facts["labels"] == {"npu": "hailo"}

    # NAME= forgets it; a malformed pair is one line, exit 2, nothing changed.
    again = agent_json(root, "config", "--label", "npu=")
    assert again["changed"] == ["label npu: hailo -> (none)"] and again["facts"]["labels"] == {}
    bad = run_agent("--root", root, "config", "--fact", "Cuda Capability=8.7")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--fact" in bad.stderr


def test_inventory_carries_facts_and_a_device_from_before_gets_them(keyset: Keys,
                                                                    tmp_path: Path) -> None:
    root = tmp_path / "device"
    assert run_agent("--root", root, "init", "--trust", keyset.trust,
                     "--label", "site=north").returncode == 0
    inv = agent_json(root, "inventory")["inventory"]
    assert inv["facts"]["labels"] == {"site": "north"} and inv["facts"]["probed"]["arch"] == _ARCH

    # A device initialised before facts existed: status says so; the next start probes.
    (root / "facts.json").unlink()
    assert "not probed yet" in run_agent("--root", root, "status").stdout
    from agent.facts import refresh
    from agent.layout import Layout

    refresh(Layout(root))  # what serve and install do as they start
    assert json.loads((root / "facts.json").read_text())["labels"] == {"site": "north"}
