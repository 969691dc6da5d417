"""A real PKCS#11 token for tests: SoftHSM2, with a key generated inside it.

    need_commands("softhsm2-util", "pkcs11-tool")    # skip without them (fail under CI=true)
    token = make_token(tmp_path / "hsm")              # a token 'airlock-release', ECDSA P-256 key id 2
    run_airlock("keys", "import-public", "hsm", "--uri", token.uri, "--dir", keys, env=token.env)

The token is made the way docs/KEYS.md tells an administrator to: Debian's
``softhsm2-util`` initialises it and OpenSC's ``pkcs11-tool`` generates the
key on it, so the private key never exists outside the token's store.
``token.env`` points SoftHSM2 at this test's own token directory
(``SOFTHSM2_CONF``), names the module for securesystemslib (``PYKCS11LIB``)
and holds the PIN in ``HSM_PIN`` for ``--pin-env HSM_PIN``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Where Debian (and Ubuntu) put SoftHSM2's PKCS#11 module.
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
PACKAGES = {"softhsm2-util": "softhsm2", "pkcs11-tool": "opensc", "openssl": "openssl"}


def need_commands(*names: str) -> None:
    """Skip the test when a command is missing; under ``CI=true`` fail instead."""
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        _missing(", ".join(missing), " ".join(PACKAGES.get(n, n) for n in missing))


def _missing(what: str, packages: str) -> None:
    why = f"{what} not installed (apt-get install {packages})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def module_path() -> str:
    """SoftHSM2's PKCS#11 module (skips, or fails under CI, without it)."""
    found = next((m for m in MODULES if Path(m).exists()), None)
    if found is None:
        _missing("SoftHSM2's PKCS#11 module", "softhsm2")
    assert found is not None
    return found


@dataclass
class Token:
    label: str
    pin: str
    env: dict[str, str]  # SOFTHSM2_CONF, PYKCS11LIB, HSM_PIN

    @property
    def uri(self) -> str:
        return f"hsm:2?label={self.label}"


def make_token(directory: Path, label: str = "airlock-release", pin: str = "123456") -> Token:
    """A fresh SoftHSM2 token under ``directory`` holding an ECDSA P-256 key with id 2."""
    need_commands("softhsm2-util", "pkcs11-tool")
    module = module_path()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", "12345678"], check=True, capture_output=True, env=env)
    subprocess.run(["pkcs11-tool", "--module", module, "--token-label", label, "--login",
                    "--pin", pin, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "02",
                    "--label", "release"], check=True, capture_output=True, env=env)
    return Token(label, pin, {"SOFTHSM2_CONF": str(conf), "PYKCS11LIB": module, "HSM_PIN": pin})
