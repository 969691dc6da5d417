"""The hostile-media corpus: bad bundles made by code from one good bundle, by threat family.

Every case names the threat-model row it exercises (``docs/THREAT_MODEL.md``),
makes its bytes from a :class:`~tests.support.kit.Kit` (a real signed bundle,
the keys that made it and the trust root a device holds), and says how a tool
must refuse it: the exit code and a substring the one-line error must contain::

    kit = Kit.create(workdir, root_key=Path("root.key"), release_key=Path("release.key"))
    for case in CASES:
        path = case.write(kit, workdir / "bad")
        # airlock verify PATH --trust kit.trust_path  -> exit case.exit, stderr has case.error

Run as a module from the repository root to write the whole corpus to a
directory (fresh keys)::

    python -m tests.hostile.cases /tmp/corpus
    ls /tmp/corpus   # one .airlock per case, plus trust.json and cases.json

Tar variants are written header by header (tests/support/tarsurgery.py) so
the Airlock reader, not the tarfile writer, is what has to refuse them.
Variants that attack the trust logic are re-signed with the real release key
(an attacker holding a key), with a rogue key, or with fewer keys than a
role's threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The families register their cases on import, in this order (the corpus order).
from tests.hostile.cases import parsing, resources, signed, tar, text, tuf  # noqa: F401
from tests.hostile.cases.catalogue import CASES, THREATS, Case, case
from tests.hostile.cases.text import HOSTILE_TEXT
from tests.support.kit import Kit

__all__ = ["CASES", "HOSTILE_TEXT", "THREATS", "Case", "case", "main", "write_corpus"]


def write_corpus(kit: Kit, out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for c in CASES:
        path = c.write(kit, out)
        index.append({"id": c.id, "threat": c.threat, "file": path.name, "exit": c.exit,
                      "error": c.error, "ring": c.ring, "device_seen": c.device_seen})
    (out / "cases.json").write_text(json.dumps(index, indent=1))
    (out / "trust.json").write_bytes(kit.trust_path.read_bytes())
    return index


def main(argv: list[str]) -> int:
    """``python -m tests.hostile.cases [OUT]``: fresh keys, the kit, every case, an index."""
    from keys.keyfile import generate_keypair

    out = Path(argv[0] if argv else "corpus")
    keydir = out / "keys"
    root_key, _ = generate_keypair("root", keydir, force=True)
    release_key, _ = generate_keypair("release", keydir, force=True)
    kit = Kit.create(out / "kit", root_key=root_key, release_key=release_key)
    index = write_corpus(kit, out)
    print(f"wrote {len(index)} cases to {out}; verify with: "
          f"airlock verify {out}/CASE.airlock --trust {out}/trust.json")
    return 0
