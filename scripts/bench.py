"""Airlock benchmarks: each figure beside its physical limit or peer, measured in the same run.

    python scripts/bench.py                  # all sections, 500 MB model, 3 repeats
    python scripts/bench.py --mb 100 --repeats 5 --only build

Results are medians over repeats (machines here are noisy) and are printed as a
Markdown table to paste into docs/BENCHMARKS.md. Files are read from the page
cache after a warm-up read, so the figures compare CPU work, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

Row = tuple[str, float, str]  # what, seconds, note


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _hashlib(path: Path) -> None:
    with path.open("rb") as f:
        hashlib.file_digest(f, "sha256")


def _tool(*args: object, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


_RSS_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _peak_rss_mb(*args: object) -> float:
    """Peak RSS of a command, from the kernel's rusage accounting.

    Measured through a small wrapper process: a child forked from this
    (large) process would count the parent's pages in its own peak.
    """
    out = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *map(str, args)], check=True, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def bench_build(work: Path, mb: int, repeats: int) -> list[Row]:
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    model_dir = work / "model"
    _tool(sys.executable, REPO / "scripts" / "modelkit.py", model_dir, "--pad-mb", mb)
    model = model_dir / "model.onnx"
    size_mb = model.stat().st_size / 1e6
    root_key, _ = generate_keypair("root", work)
    rel_key, rel_pub = generate_keypair("release", work)
    trust = work / "root.json"
    trust.write_bytes(create_root([load_signer(root_key)], [load_public_key(rel_pub)]).to_bytes())
    spec = work / "airlock.yaml"
    spec.write_text(
        "name: bench\nversion: '1'\nsequence: 1\nmodels:\n  - name: m\n    path: model/model.onnx\n"
        "    health:\n      inputs: model/inputs.npz\n      outputs: model/outputs.npz\n"
    )
    bundle = work / "bench.airlock"
    _hashlib(model)  # warm the page cache
    py = sys.executable
    t_hash = _median(lambda: _hashlib(model), repeats)
    t_tar = _median(lambda: _tool("tar", "cf", work / "plain.tar", "-C", model_dir, "model.onnx"), repeats)
    t_build = _median(lambda: _tool(py, "-m", "bundler", "build", spec, "--key", rel_key, "-o", bundle), repeats)
    t_verify = _median(lambda: _tool(py, "-m", "bundler", "verify", bundle, "--trust", trust), repeats)
    rss_build = _peak_rss_mb(py, "-m", "bundler", "build", spec, "--key", rel_key, "-o", bundle)
    rss_verify = _peak_rss_mb(py, "-m", "bundler", "verify", bundle, "--trust", trust)

    def mbs(t: float) -> str:
        return f"{size_mb / t:,.0f} MB/s"

    return [
        (f"hashlib sha256 of the {size_mb:.0f} MB model (hashing limit)", t_hash, mbs(t_hash)),
        ("`tar cf` of the model (copy limit)", t_tar, mbs(t_tar)),
        ("`airlock build` (hash + signed tar write)", t_build,
         f"{mbs(t_build)}; {t_build / (t_hash + t_tar):.2f}× hash+tar; peak RSS {rss_build:.0f} MB"),
        ("`airlock verify` (signature + every blob)", t_verify,
         f"{mbs(t_verify)}; {t_verify / t_hash:.2f}× hashlib; peak RSS {rss_verify:.0f} MB"),
    ]


SECTIONS: dict[str, Callable[[Path, int, int], list[Row]]] = {"build": bench_build}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=500, help="model size in MB")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=sorted(SECTIONS), action="append")
    a = p.parse_args()
    print("| section | what | median s | figure |\n| --- | --- | --- | --- |")
    for name in a.only or list(SECTIONS):
        work = Path(tempfile.mkdtemp(prefix=f"airlock-bench-{name}-"))
        try:
            for what, secs, note in SECTIONS[name](work, a.mb, a.repeats):
                print(f"| {name} | {what} | {secs:.2f} | {note} |", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
