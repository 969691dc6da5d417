"""A release key that lives on a PKCS#11 token (SoftHSM2), through securesystemslib's HSMSigner.

The token is real (``softhsm2-util``; the key generated on it by
``pkcs11-tool``), the bundle is real and a device installs it. The token's
key is ECDSA P-256: securesystemslib's HSMSigner signs with ECDSA keys only
(SoftHSM2 could hold Ed25519, but no securesystemslib signer would use it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_agent, run_airlock
from tests.support.device import agent_json
from tests.support.softhsm import Token, make_token
from tests.support.spec import write_spec


@pytest.fixture
def token(tmp_path: Path) -> Token:
    return make_token(tmp_path / "hsm")


def _trust(tmp_path: Path, *release_pubs: Path) -> Path:
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    root_key, _ = generate_keypair("root", tmp_path / "keys", force=True)
    trust = tmp_path / "root.json"
    trust.write_bytes(create_root([load_signer(root_key)],
                                  [load_public_key(p) for p in release_pubs]).to_bytes())
    return trust


def test_a_token_key_signs_a_release_devices_accept(token: Token, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    r = run_airlock("keys", "import-public", "hsm-release", "--uri", token.uri, "--dir", keys,
                    "--json", env=token.env)
    assert r.returncode == 0, r.stderr
    recorded = json.loads((keys / "hsm-release.pub").read_text())
    assert recorded["scheme"] == "ecdsa-sha2-nistp256"
    assert recorded["x-airlock-private-key-uri"] == token.uri
    assert "PRIVATE" not in (keys / "hsm-release.pub").read_text()
    trust = _trust(tmp_path, keys / "hsm-release.pub")
    bundle = tmp_path / "v.airlock"
    r = run_airlock("build", write_spec(tmp_path), "--key", keys / "hsm-release.pub",
                    "--pin-env", "HSM_PIN", "-o", bundle, env=token.env)
    assert r.returncode == 0, r.stderr
    device = tmp_path / "device"
    assert run_agent("--root", device, "init", "--trust", trust).returncode == 0
    installed = agent_json(device, "install", bundle)
    assert installed["installed"] and installed["active"] == "vision-1"


def test_a_token_signs_an_existing_bundle_in_place(token: Token, tmp_path: Path) -> None:
    from keys.keyfile import generate_keypair

    file_key, file_pub = generate_keypair("ci", tmp_path / "keys")
    keys = tmp_path / "keys"
    assert run_airlock("keys", "import-public", "hsm", "--uri", token.uri, "--dir", keys,
                       env=token.env).returncode == 0
    from keys.keyfile import load_public_key, load_signer
    from keys.trust import create_root

    trust = tmp_path / "root.json"
    trust.write_bytes(create_root([load_signer(file_key)],
                                  [load_public_key(file_pub), load_public_key(keys / "hsm.pub")],
                                  release_threshold=2).to_bytes())
    bundle = tmp_path / "v.airlock"
    assert run_airlock("build", write_spec(tmp_path), "--key", file_key, "-o",
                       bundle).returncode == 0
    # The URI itself works as --key too: the public key is asked of the token.
    r = run_airlock("sign", bundle, "--key", token.uri, "--pin-env", "HSM_PIN", "--yes",
                    "--trust", trust, "--json", env=token.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tally"]["complete"]
    assert run_airlock("verify", bundle, "--trust", trust).returncode == 0


def test_token_failures_are_one_line_and_write_nothing(token: Token, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert run_airlock("keys", "import-public", "hsm", "--uri", token.uri, "--dir", keys,
                       env=token.env).returncode == 0
    spec = write_spec(tmp_path)
    out = tmp_path / "v.airlock"
    # A .pub that names this token's URI but holds another P-256 key's public half.
    from cryptography.hazmat.primitives.asymmetric import ec
    from securesystemslib.signer import SSlibKey

    from keys.keyfile import write_public_key

    other = SSlibKey.from_crypto(ec.generate_private_key(ec.SECP256R1()).public_key())
    write_public_key(keys / "wrong.pub", other, token.uri)
    cases = [
        (["--key", keys / "hsm.pub", "--pin-env", "HSM_PIN"], {"HSM_PIN": "000000"}, "wrong PIN"),
        (["--key", keys / "hsm.pub"], {}, "--pin-env"),
        (["--key", "hsm:7?label=" + token.label, "--pin-env", "HSM_PIN"], {},
         "could not find ECDSA key"),
        (["--key", keys / "hsm.pub", "--pin-env", "HSM_PIN"], {"PYKCS11LIB": ""}, "PYKCS11LIB"),
        (["--key", keys / "wrong.pub", "--pin-env", "HSM_PIN"], {}, "belongs to another key"),
    ]
    for args, env, says in cases:
        r = run_airlock("build", spec, *args, "-o", out, env={**token.env, **env},
                        stdin=subprocess.DEVNULL)  # no terminal: nothing may prompt
        assert r.returncode == 2, (args, r.stderr)
        assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert not out.exists()
