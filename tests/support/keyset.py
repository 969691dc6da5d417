"""Real keys and a real trust root, as ``airlock keys`` makes them.

    keys = make_keyset(tmp_path / "keys")
    run_airlock("build", spec, "--key", keys.release_key, "-o", out)
    run_airlock("verify", out, "--trust", keys.trust)

The session fixture ``keyset`` (tests/conftest.py) is one of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Keys:
    dir: Path
    root_key: Path
    release_key: Path
    release_pub: Path
    trust: Path  # root.json trusting release_pub, signed by root_key


def make_keyset(directory: Path) -> Keys:
    """A root key, a release key and a trust root trusting the release key."""
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    root_key, _ = generate_keypair("root", directory)
    release_key, release_pub = generate_keypair("release", directory)
    md = create_root([load_signer(root_key)], [load_public_key(release_pub)])
    trust = directory / "root.json"
    trust.write_bytes(md.to_bytes())
    return Keys(directory, root_key, release_key, release_pub, trust)
