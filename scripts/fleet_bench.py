"""Rollout wall time over loopback sshd devices: 1, 5 and 10 devices, --parallel 1 and 4.

    sudo .venv/bin/python -m scripts.fleet_bench --out /tmp/fleet-bench.json

Each run gets fresh devices (real sshd on 127.0.0.1, one agent root each, all on
vision-1) and rolls vision-2 out in one wave with ``airlock fleet rollout``; the
report's per-device ``ssh_seconds`` (connect, host key check, authentication)
is summed to show how much of the time is SSH setup. Needs root (sshd).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _run(work: Path, n: int, parallel: int, keys: Any, v1: Path, v2: Path) -> dict[str, Any]:
    from tests.support.cli import run_airlock
    from tests.support.site import TestSite

    with TestSite.start(work / f"site-{n}-{parallel}", keys.trust, ["prod"] * n, base=v1) as s:
        start = time.monotonic()
        p = run_airlock("fleet", "rollout", v2, "--inventory", s.inventory, "--known-hosts",
                        s.known_hosts, "--waves", "100%", "--parallel", parallel, "--json")
        wall = time.monotonic() - start
        report = json.loads(p.stdout)
        assert p.returncode == 0, p.stderr
        devices = report["devices"]
        return {
            "devices": n, "parallel": parallel, "wall_s": round(wall, 2),
            "rollout_s": report["seconds"],
            "ssh_setup_s_sum": round(sum(d["ssh_seconds"] for d in devices), 3),
            "ssh_setup_s_mean": round(sum(d["ssh_seconds"] for d in devices) / n, 3),
            "push_s_sum": round(sum(d["push_seconds"] for d in devices), 3),
            "install_s_sum": round(sum(d["install_seconds"] for d in devices), 3),
        }


def main() -> None:
    from tests.support.keyset import make_keyset
    from tests.support.spec import build, write_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sizes", default="1,5,10")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keys = make_keyset(work / "keys")
        v1 = build(write_spec(work, sequence=1, runs=2), work / "v1.airlock", [keys.release_key])
        v2 = build(write_spec(work, sequence=2, runs=2, scale=3.0), work / "v2.airlock",
                   [keys.release_key])
        rows = [_run(work, n, k, keys, v1, v2)
                for n in map(int, a.sizes.split(",")) for k in (1, 4)]
    for r in rows:
        print(f"{r['devices']:>3} devices  --parallel {r['parallel']}  wall {r['wall_s']:6.2f} s  "
              f"ssh setup {r['ssh_setup_s_sum']:5.2f} s total ({r['ssh_setup_s_mean']:.3f} s "
              f"each)  push {r['push_s_sum']:5.2f} s  install {r['install_s_sum']:6.2f} s")
    if a.out:
        a.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
