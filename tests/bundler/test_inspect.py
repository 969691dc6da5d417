"""'airlock inspect' shows everything that will run or matter, and never calls a damaged copy fine."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import write_spec


def _inspect(bundle: Path, *args: object) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    r = run_airlock("inspect", bundle, *args, "--json")
    assert "Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def test_inspect_shows_what_will_run_and_who_signed(keyset: Keys, tmp_path: Path) -> None:
    hooks = {"post_switch": "systemctl restart vision", "probe": "curl -fsS localhost:8080/ok",
             "probe_window_s": 20}
    spec = write_spec(tmp_path, health={"max_p95_ms": 50, "max_memory_mb": 300},
                      extra={"hooks": hooks, "rings": ["canary"], "flags": {"threshold": 0.5}})
    k = tmp_path / "k"
    assert run_airlock("keys", "generate", "root2", "--dir", k, "--no-passphrase").returncode == 0
    v2 = tmp_path / "root-v2.json"
    assert run_airlock("keys", "rotate", "--trust", keyset.trust, "--root-key", keyset.root_key,
                       "--new-root-key", k / "root2.key", "-o", v2).returncode == 0
    bundle = tmp_path / "v1.airlock"
    r = run_airlock("build", spec, "--key", keyset.release_key, "--root", v2, "-o", bundle,
                    "--json")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)

    code, info, _ = _inspect(bundle, "--trust", keyset.trust)
    assert code == 0
    assert info["hooks"] == {"post_switch": "systemctl restart vision",
                             "probe": "curl -fsS localhost:8080/ok", "probe_window_s": 20}
    assert info["rings"] == ["canary"] and info["flags"] == {"threshold": 0.5}
    assert info["root_rotation"]["version"] == 2 and info["root_rotation"]["signatures"] == 2
    assert info["verified_role"] == "release" and info["signer_rings"] is None
    assert info["signers"] == built["signers"]
    model = info["models"][0]
    assert model["max_p95_ms"] == 50 and model["max_memory_mb"] == 300 and model["golden"]
    assert info["expires_warning"] is None and 29 < info["expires_in_days"] <= 30
    # One count everywhere: build, verify and inspect agree.
    r = run_airlock("verify", bundle, "--trust", keyset.trust, "--json")
    verified = json.loads(r.stdout)
    assert info["blobs"] == built["blobs"] == verified["blobs"]
    assert info["files"] == built["files"] == verified["files"]
    assert info["full_size"] == info["shipped_size"] and info["archive_bytes"] == bundle.stat().st_size

    text = run_airlock("inspect", bundle).stdout
    for words in ("post-switch hook: systemctl restart vision",
                  "probe: curl -fsS localhost:8080/ok (within 20 s)",
                  "carries a new trust root: version 2", "rings     canary",
                  "p95 <= 50 ms", "memory <= 300 MiB", "not verified: give --trust"):
        assert words in text, (words, text)


def test_inspect_warns_of_an_expiry_that_is_near(keyset: Keys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, expires="2d")
    bundle = tmp_path / "soon.airlock"
    assert run_airlock("build", spec, "--key", keyset.release_key, "-o", bundle).returncode == 0
    code, info, err = _inspect(bundle)
    assert code == 0 and info["expires_warning"].startswith("expires in 2.0 days")
    assert "warning: " in err and "may expire before it is installed" in err


def test_a_truncated_or_damaged_copy_is_never_reported_fine(keyset: Keys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, pad_mb=1)
    bundle = tmp_path / "v1.airlock"
    assert run_airlock("build", spec, "--key", keyset.release_key, "-o", bundle).returncode == 0
    data = bundle.read_bytes()
    model_at = data.index(b"padding")  # inside the model blob, the biggest one

    cut = tmp_path / "cut.airlock"
    cut.write_bytes(data[: model_at + 4096])
    for args in ((), ("--fast",)):
        code, failure, _ = _inspect(cut, *args)
        assert code == 3 and "truncated" in failure["error"], (args, failure)

    # Same length, one byte changed: the full read hashes it; --fast reads the structure only.
    flipped = bytearray(data)
    flipped[model_at + 100_000] ^= 0xFF
    damaged = tmp_path / "damaged.airlock"
    damaged.write_bytes(bytes(flipped))
    code, failure, _ = _inspect(damaged)
    assert code == 3 and "sha256" in failure["error"]
    code, info, _ = _inspect(damaged, "--fast")
    assert code == 0 and info["checked"] == "structure and lengths (--fast)"
