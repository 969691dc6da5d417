"""The health check must compare something (issue 13, class 8).

Golden outputs that hold no array, or that name no output of the model, made
a check that ran the model and compared nothing, and passed. Now:

* ``airlock build`` refuses them, exit 2, naming ``models[N].health.outputs``
  and its line (as it refuses golden inputs a device would reject, and
  arrays only pickle could load);
* a device refuses a signed release carrying them (an older bundler, or a key
  holder): its health check fails, exit 4, naming the model, and the release
  that was running stays active.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from scripts import modelkit
from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.kit import ACTIVE_SEQUENCE, Kit
from tests.support.spec import write_spec
from tests.support.tarsurgery import bundle, sign_dict


def _npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


_X = np.zeros((1, modelkit.WIDTH), np.float32)

# (id, which golden file, its bytes, message)
BAD_GOLDEN = [
    ("outputs-empty", "outputs", _npz(), "holds no array: the health check would compare nothing"),
    ("outputs-name-no-output", "outputs", _npz(z=_X), "names 'z', which the model does not output"),
    ("outputs-one-unknown", "outputs", _npz(y=_X, extra=_X),
     "names 'extra', which the model does not output"),
    ("inputs-missing", "inputs", _npz(), "lacks model input(s) 'x'"),
    ("inputs-extra", "inputs", _npz(x=_X, k=_X), "names 'k', which the model does not take"),
    ("inputs-pickled", "inputs", _npz(x=np.array([{"a": 1}], dtype=object)),
     "holds Python objects"),
    ("outputs-not-npz", "outputs", b"y,1,2,3\n", "is not an .npz file numpy can read"),
]


@pytest.mark.parametrize("case", BAD_GOLDEN, ids=[c[0] for c in BAD_GOLDEN])
def test_build_refuses_golden_data_a_check_cannot_use(
    case: tuple[str, str, bytes, str], keyset: Keys, tmp_path: Path
) -> None:
    _id, which, data, message = case
    spec = write_spec(tmp_path)
    (tmp_path / "model-vision-1" / f"{which}.npz").write_bytes(data)
    out = tmp_path / "out.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", out)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"vision-1.yaml:{_line_of(spec, which)}: field 'models[0].health.{which}'" in line
    assert message in line and "Traceback" not in r.stderr
    assert not out.exists()


def _line_of(spec: Path, which: str) -> int:
    lines = spec.read_text().splitlines()
    return next(i for i, t in enumerate(lines, 1) if t.strip().startswith(f"{which}:"))


@pytest.fixture
def device(kit: Kit, tmp_path: Path) -> Path:
    """A device running the kit's active release (sequence ACTIVE_SEQUENCE)."""
    root = tmp_path / "root"
    assert run_agent("--root", root, "init", "--trust", kit.trust_path).returncode == 0
    active = tmp_path / "active.airlock"
    active.write_bytes(kit.active)
    assert run_agent("--root", root, "install", active).returncode == 0
    return root


@pytest.mark.parametrize("data, reason", [
    (_npz(), "golden outputs hold no array: the check would compare nothing"),
    (_npz(z=_X), "golden output(s) 'z' are not outputs of the model"),
], ids=["empty", "names-no-output"])
def test_device_refuses_a_signed_release_whose_check_compares_nothing(
    data: bytes, reason: str, kit: Kit, device: Path, tmp_path: Path
) -> None:
    path, _ = kit.blob("outputs")
    signed, files = kit.rewrite_blob(path, data)
    bad = tmp_path / "bad.airlock"
    bad.write_bytes(bundle(sign_dict(signed, [kit.release]), files))

    r = run_agent("--root", device, "install", bad)
    assert r.returncode == 4, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"health check of model 'detector' failed: {reason}" in line
    assert f"vision-{ACTIVE_SEQUENCE} stays active" in line
    assert agent_json(device, "status")["active"]["id"] == f"vision-{ACTIVE_SEQUENCE}"
    check = run_agent("--root", device, "check")
    assert check.returncode == 0, check.stderr
