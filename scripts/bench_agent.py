"""Measure airlock-agent: install vs sha256 vs cp of the same bundle, rollback, peak RSS.

    python scripts/bench_agent.py --pad-mb 500 --workdir /tmp/airlock-bench

Builds small (1 MiB) and large (PAD MiB) bundles with real models, then, in
one run: hashes the large bundle with hashlib, copies it with cp, installs it
with ``airlock-agent install`` (subprocess); times ``rollback`` between two
releases of each size (the health check of the target is reported apart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]


def _agent(root: Path, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "agent", "--root", str(root), *args, "--json"],
                       capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"airlock-agent {' '.join(args)} failed: {p.stderr.strip()}")
    result: dict[str, Any] = json.loads(p.stdout)
    return result


def _bundles(work: Path, pad_mb: int) -> tuple[Path, dict[str, Path]]:
    from bundler.build import build_bundle
    from bundler.spec import load_spec
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    keys = work / "keys"
    if not (keys / "root.json").exists():
        root_key, _ = generate_keypair("root", keys, force=True)
        _, release_pub = generate_keypair("release", keys, force=True)
        md = create_root([load_signer(root_key)], [load_public_key(release_pub)])
        (keys / "root.json").write_bytes(md.to_bytes())
    signer = load_signer(keys / "release.key")
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_spec  # the same spec the tests use

    out = {}
    for name, seq, pad in (("small", 1, 1), ("small", 2, 1), ("large", 1, pad_mb),
                           ("large", 2, pad_mb)):
        path = work / f"{name}-{seq}.airlock"
        if not path.exists():
            d = work / f"{name}-{seq}"
            d.mkdir(exist_ok=True)
            spec = load_spec(write_spec(d, name=name, sequence=seq, scale=seq + 1.0,
                                        pad_mb=pad))
            build_bundle(spec, [signer], path)
        out[f"{name}-{seq}"] = path
    return keys / "root.json", out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pad-mb", type=int, default=500)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/airlock-bench"))
    a = p.parse_args()
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    trust, bundles = _bundles(work, a.pad_mb)
    big = bundles["large-1"]
    size_mb = big.stat().st_size / 2**20

    def sha() -> None:
        h = hashlib.sha256()
        with big.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)

    copy = work / "copy.airlock"
    results: dict[str, Any] = {"bundle_mb": round(size_mb, 1)}
    results["sha256_s"] = round(_timed(sha), 2)
    results["cp_s"] = round(_timed(lambda: subprocess.run(["cp", str(big), str(copy)],
                                                          check=True)), 2)
    results["cp_sync_s"] = round(_timed(lambda: subprocess.run(
        ["sh", "-c", f"cp {big} {copy}.2 && sync {copy}.2"], check=True)), 2)
    copy.unlink()
    Path(f"{copy}.2").unlink()

    for name in ("small", "large"):
        root = work / f"device-{name}"
        shutil.rmtree(root, ignore_errors=True)
        _agent(root, "init", "--trust", str(trust), "--device-id", "bench")
        start = time.perf_counter()
        first = _agent(root, "install", str(bundles[f"{name}-1"]))
        wall = time.perf_counter() - start
        _agent(root, "install", str(bundles[f"{name}-2"]))
        back = _agent(root, "rollback")
        results[name] = {
            "install_wall_s": round(wall, 2),
            "install_in_agent_s": first["seconds"],
            "install_health_s": first["health_s"],
            "install_without_health_s": round(first["seconds"] - first["health_s"], 2),
            "agent_peak_rss_mb": first["agent_peak_rss_mb"],
            "health_child_peak_rss_mb": first["health"]["models"][0]["peak_rss_mb"],
            "rollback_health_s": back["health_s"],
            "rollback_without_health_s": back["seconds_without_health"],
            "rollback_switch_s": back["switch_s"],
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
