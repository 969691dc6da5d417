"""Benchmark: ``airlock build`` of registry images next to ``skopeo copy`` of the same images.

    PYTHONPATH=. python scripts/bench_registry.py --mb 300 [--json]

Starts a loopback ``docker-registry``, pushes two images of random-data
layers that share a base layer (``mb`` MB of unique layer bytes in all),
then times, in the same run:

* ``skopeo copy docker://… oci-archive:…`` of each image (what a user would do
  without Airlock; unsigned, no model, one archive per image);
* ``airlock build`` of a spec naming both images, with an empty pull cache;
* the same build again with the cache warm (no blob is downloaded).

``bench_registry(work, mb)`` returns the figures as a dict, for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import ocikit  # noqa: E402


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_registry(work: Path, mb: int = 300) -> dict[str, Any]:
    """Run the benchmark under ``work`` (needs ~5x ``mb`` of disk); returns seconds and sizes."""
    from keys.keyfile import generate_keypair

    work.mkdir(parents=True, exist_ok=True)
    third = max(1, mb // 3) * 1024 * 1024
    base = ocikit.random_layer(third, seed=101, name="base.bin")
    tops = [ocikit.random_layer(third, seed=102 + i, name=f"top{i}.bin") for i in range(2)]
    key, _ = generate_keypair("bench", work / "keys")
    with ocikit.Registry.start(work / "registry") as reg:
        refs = []
        for i, top in enumerate(tops):
            ref = f"{reg.host}/bench/img{i}:1"
            ocikit.push(ocikit.write_image(work / f"src{i}", "1", [base, top]), "1", ref)
            refs.append(ref)
        # The layouts were only needed to push; free the disk before timing.
        for i in range(len(tops)):
            subprocess.run(["rm", "-rf", str(work / f"src{i}")], check=True)

        skopeo_s = sum(
            _timed(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci-archive:{work / f'skopeo{i}.tar'}:{ref}",
                ]
            )
            for i, ref in enumerate(refs)
        )
        spec = work / "bench.yaml"
        spec.write_text(
            'name: bench\nversion: "1"\nsequence: 1\nimages:\n'
            + "".join(f"  - {r}\n" for r in refs)
        )
        build = [
            sys.executable,
            "-m",
            "bundler",
            "build",
            str(spec),
            "--key",
            str(key),
            "-o",
            str(work / "bench.airlock"),
            "--insecure",
            reg.host,
            "--cache",
            str(work / "cache"),
        ]
        env_cmd = ["env", f"PYTHONPATH={HERE.parent}", *build]
        cold_s = _timed(env_cmd)
        gets_cold = reg.blob_gets()
        warm_s = _timed(env_cmd)
        gets_warm = reg.blob_gets() - gets_cold
    unique = sum(len(layer.data) for layer in [base, *tops])
    return {
        "unique_layer_mb": round(unique / 2**20, 1),
        "bundle_mb": round((work / "bench.airlock").stat().st_size / 2**20, 1),
        "skopeo_oci_archive_s": round(skopeo_s, 2),
        "airlock_build_cold_s": round(cold_s, 2),
        "airlock_build_cached_s": round(warm_s, 2),
        "blob_downloads_cached_build": gets_warm,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mb", type=int, default=300, help="unique MB of image layers (default 300)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="airlock-bench-") as tmp:
        result = bench_registry(Path(tmp), a.mb)
    if a.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
