"""Shared fixtures: real keys, a real trust root, real ONNX models, real bundles.

``run_airlock`` / ``run_agent`` run the command-line tools in a subprocess,
exactly as a user would (``python -m bundler`` / ``python -m agent``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import modelkit  # noqa: E402


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_tool(
    module: str,
    *args: Any,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=input is None,
        env=_env(env),
        timeout=timeout,
        cwd=cwd,
        input=input,
    )


def run_airlock(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_tool("bundler", *args, **kw)


def run_agent(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run_tool("agent", *args, **kw)


@dataclass
class Keys:
    dir: Path
    root_key: Path
    release_key: Path
    release_pub: Path
    trust: Path


@pytest.fixture(scope="session")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A root key, a release key and a trust root trusting the release key."""
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    d = tmp_path_factory.mktemp("keys")
    root_key, _ = generate_keypair("root", d)
    release_key, release_pub = generate_keypair("release", d)
    md = create_root([load_signer(root_key)], [load_public_key(release_pub)])
    trust = d / "root.json"
    trust.write_bytes(md.to_bytes())
    return Keys(d, root_key, release_key, release_pub, trust)


def write_spec(
    directory: Path,
    *,
    name: str = "vision",
    version: str = "1.0",
    sequence: int = 1,
    scale: float = 2.0,
    wrong: bool = False,
    pad_mb: int = 0,
    hang: bool = False,
    extra_health: str = "",
    extra: str = "",
    expires: str = "30d",
) -> Path:
    """A real model (+ golden data from onnxruntime) and a spec naming it."""
    model_dir = directory / f"model-{name}-{sequence}"
    modelkit.make(model_dir, scale, wrong=wrong, pad_mb=pad_mb, hang=hang)
    spec = directory / f"{name}-{sequence}.yaml"
    spec.write_text(
        f'name: {name}\nversion: "{version}"\nsequence: {sequence}\nexpires: {expires}\n'
        f"models:\n  - name: detector\n    path: {model_dir.name}/model.onnx\n    health:\n"
        f"      inputs: {model_dir.name}/inputs.npz\n      outputs: {model_dir.name}/outputs.npz\n"
        f"      runs: 5\n      timeout_s: 30\n{extra_health}{extra}"
    )
    return spec


@pytest.fixture
def make_bundle(keyset: Keys, tmp_path: Path) -> Callable[..., Path]:
    """Build a real bundle in-process: make_bundle(sequence=2, wrong=True) -> path."""
    from bundler.build import build_bundle
    from bundler.spec import load_spec
    from keys.keyfile import load_signer

    def make(*, keys: list[Path] | None = None, **kw: Any) -> Path:
        spec_path = write_spec(tmp_path, **kw)
        spec = load_spec(spec_path)
        out = tmp_path / f"{spec.name}-{spec.sequence}.airlock"
        signers = [load_signer(k) for k in (keys or [keyset.release_key])]
        build_bundle(spec, signers, out)
        return out

    return make
