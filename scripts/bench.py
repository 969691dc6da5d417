"""Airlock benchmarks: each figure beside its physical limit or peer, measured in the same run.

    python scripts/bench.py                  # all sections, 500 MB model, 3 repeats
    python scripts/bench.py --mb 100 --repeats 5 --only build
    python scripts/bench.py --mb 240 --repeats 1 --only sneakernet   # needs root (sshd)
    python scripts/bench.py --only health    # the host's check before signing beside the agent's

Results are medians over repeats (machines here are noisy) and are printed as a
Markdown table to paste into docs/BENCHMARKS.md. Files are read from the page
cache after a warm-up read, so the figures compare CPU work, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    subprocess.run(
        [str(a) for a in args],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


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
        [sys.executable, "-c", _RSS_WRAPPER, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
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
    t_tar = _median(
        lambda: _tool("tar", "cf", work / "plain.tar", "-C", model_dir, "model.onnx"), repeats
    )
    # Without the host's health check: this row compares hashing and writing with their
    # limits; the "health" section times the check on its own.
    t_build = _median(
        lambda: _tool(py, "-m", "bundler", "build", spec, "--key", rel_key, "-o", bundle,
                      "--no-check"), repeats
    )
    t_verify = _median(
        lambda: _tool(py, "-m", "bundler", "verify", bundle, "--trust", trust), repeats
    )
    rss_build = _peak_rss_mb(py, "-m", "bundler", "build", spec, "--key", rel_key, "-o", bundle,
                             "--no-check")
    rss_verify = _peak_rss_mb(py, "-m", "bundler", "verify", bundle, "--trust", trust)

    def mbs(t: float) -> str:
        return f"{size_mb / t:,.0f} MB/s"

    return [
        (f"hashlib sha256 of the {size_mb:.0f} MB model (hashing limit)", t_hash, mbs(t_hash)),
        ("`tar cf` of the model (copy limit)", t_tar, mbs(t_tar)),
        (
            "`airlock build --no-check` (hash + signed tar write)",
            t_build,
            f"{mbs(t_build)}; {t_build / (t_hash + t_tar):.2f}× hash+tar; peak RSS {rss_build:.0f} MB",
        ),
        (
            "`airlock verify` (signature + every blob)",
            t_verify,
            f"{mbs(t_verify)}; {t_verify / t_hash:.2f}× hashlib; peak RSS {rss_verify:.0f} MB",
        ),
    ]


def _agent(root: Path, *args: object) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--root", str(root), *map(str, args), "--json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def bench_install(work: Path, mb: int, repeats: int) -> list[Row]:
    """Install a large bundle beside sha256 and cp of it; rollback for 1 MB and large releases."""
    from bundler.build import build_bundle
    from bundler.spec import load_spec
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    root_key, _ = generate_keypair("root", work)
    rel_key, rel_pub = generate_keypair("release", work)
    trust = work / "root.json"
    trust.write_bytes(create_root([load_signer(root_key)], [load_public_key(rel_pub)]).to_bytes())
    bundles: dict[tuple[int, int], Path] = {}
    for pad, seq in ((1, 1), (1, 2), (mb, 1), (mb, 2)):
        d = work / f"m{pad}-{seq}"
        _tool(
            sys.executable, REPO / "scripts" / "modelkit.py", d, "--pad-mb", pad, "--scale", seq + 1
        )
        spec = d / "airlock.yaml"
        spec.write_text(
            f"name: b{pad}\nversion: '{seq}'\nsequence: {seq}\nmodels:\n  - name: m\n"
            "    path: model.onnx\n    health:\n      inputs: inputs.npz\n      outputs: outputs.npz\n"
        )
        bundles[pad, seq] = work / f"b{pad}-{seq}.airlock"
        build_bundle(load_spec(spec), [load_signer(rel_key)], bundles[pad, seq])
    big = bundles[mb, 1]
    size_mb = big.stat().st_size / 1e6
    _hashlib(big)
    t_hash = _median(lambda: _hashlib(big), repeats)
    t_cp = _median(lambda: _tool("cp", big, work / "copy.airlock"), repeats)

    installs: list[dict[str, Any]] = []
    rollbacks: dict[int, list[dict[str, Any]]] = {1: [], mb: []}
    for i in range(repeats):
        for pad in (1, mb):
            root = work / f"device-{pad}-{i}"
            _agent(root, "init", "--trust", trust)
            t = time.perf_counter()
            first = _agent(root, "install", bundles[pad, 1])
            first["wall"] = time.perf_counter() - t
            if pad == mb:
                installs.append(first)
            _agent(root, "install", bundles[pad, 2])
            rollbacks[pad].append(_agent(root, "rollback"))
            shutil.rmtree(root)

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    t_install = statistics.median(r["wall"] for r in installs)
    t_health = med(installs, "health_s")
    rss = med(installs, "agent_peak_rss_mb")
    return [
        (
            f"hashlib sha256 of the {size_mb:.0f} MB bundle (hashing limit)",
            t_hash,
            f"{size_mb / t_hash:,.0f} MB/s",
        ),
        ("`cp` of the bundle (copy limit)", t_cp, f"{size_mb / t_cp:,.0f} MB/s"),
        (
            "`airlock-agent install`, wall (verify, store, health, switch)",
            t_install,
            f"{t_install / (t_hash + t_cp):.2f}× sha256+cp; agent peak RSS {rss:.0f} MB",
        ),
        ("…of which the health check (ONNX Runtime loads the model)", t_health, ""),
        (
            "…install without the health check",
            t_install - t_health,
            f"{(t_install - t_health) / (t_hash + t_cp):.2f}× sha256+cp",
        ),
        (
            "`rollback` of a 1 MB release, health check excluded",
            med(rollbacks[1], "seconds_without_health"),
            "",
        ),
        (
            f"`rollback` of a {size_mb:.0f} MB release, health check excluded",
            med(rollbacks[mb], "seconds_without_health"),
            "independent of size: two symlink renames",
        ),
    ]


def bench_health(work: Path, mb: int, repeats: int) -> list[Row]:
    """The health check on the host (airlock check, before signing) beside the device's."""
    from bundler.build import build_bundle
    from bundler.spec import load_spec
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    root_key, _ = generate_keypair("root", work)
    rel_key, rel_pub = generate_keypair("release", work)
    trust = work / "root.json"
    trust.write_bytes(create_root([load_signer(root_key)], [load_public_key(rel_pub)]).to_bytes())
    rows: list[Row] = []
    for pad in (0, mb):
        d = work / f"m{pad}"
        _tool(sys.executable, REPO / "scripts" / "modelkit.py", d, "--pad-mb", pad)
        spec = d / "airlock.yaml"
        spec.write_text(
            "name: h\nversion: '1'\nsequence: 1\nmodels:\n  - name: m\n    path: model.onnx\n"
            "    health:\n      inputs: inputs.npz\n      outputs: outputs.npz\n"
        )
        bundle = work / f"h{pad}.airlock"
        build_bundle(load_spec(spec), [load_signer(rel_key)], bundle, check=False)
        size = (d / "model.onnx").stat().st_size / 1e6
        what = "the demo model" if pad == 0 else f"a {size:.0f} MB model"
        _hashlib(d / "model.onnx")  # page cache
        host: list[dict[str, Any]] = []
        walls: list[float] = []
        agent: list[float] = []
        for i in range(repeats):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "bundler", "check", str(spec), "--json"],
                                 check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
            walls.append(time.perf_counter() - t)
            host.append(json.loads(out.stdout)["models"][0])
            root = work / f"device-{pad}-{i}"
            _agent(root, "init", "--trust", trust)
            agent.append(float(_agent(root, "install", bundle)["health_s"]))
            shutil.rmtree(root)
        check = statistics.median(float(m["seconds"]) for m in host)
        peak = statistics.median(float(m["peak_rss_mb"]) for m in host)
        rows += [
            (f"`airlock check` of {what}, wall (start, hash, check)", statistics.median(walls),
             ""),
            (f"…of which the host's health check of {what}", check,
             f"child peak RSS {peak:.0f} MB"),
            (f"the agent's health check of {what} (install)", statistics.median(agent),
             f"host/agent {check / statistics.median(agent):.2f}"),
        ]
    return rows


def bench_registry(work: Path, mb: int, repeats: int) -> list[Row]:
    """Build from a loopback registry beside `skopeo copy` of the same images."""
    import ocikit

    from keys.keyfile import generate_keypair

    third = max(1, mb // 3) * 1024 * 1024
    base = ocikit.random_layer(third, seed=101, name="base.bin")
    tops = [ocikit.random_layer(third, seed=102 + i, name=f"top{i}.bin") for i in range(2)]
    key, _ = generate_keypair("bench", work / "keys")
    skopeo: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    with ocikit.Registry.start(work / "registry") as reg:
        refs = [f"{reg.host}/bench/img{i}:1" for i in range(len(tops))]
        for i, (top, ref) in enumerate(zip(tops, refs, strict=True)):
            ocikit.push(ocikit.write_image(work / f"src{i}", "1", [base, top]), "1", ref)
            shutil.rmtree(work / f"src{i}")
        spec = work / "bench.yaml"
        spec.write_text(
            'name: bench\nversion: "1"\nsequence: 1\nimages:\n'
            + "".join(f"  - {r}\n" for r in refs)
        )
        for i in range(repeats):
            t = time.perf_counter()
            for j, ref in enumerate(refs):
                _tool(
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci-archive:{work / f'skopeo{j}.tar'}:{ref}",
                )
            skopeo.append(time.perf_counter() - t)
            build = (
                sys.executable,
                "-m",
                "bundler",
                "build",
                spec,
                "--key",
                key,
                "-o",
                work / "bench.airlock",
                "--insecure",
                reg.host,
                "--cache",
                work / f"cache{i}",
            )
            t = time.perf_counter()
            _tool(*build)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            _tool(*build)
            warm.append(time.perf_counter() - t)
            for j in range(len(refs)):
                (work / f"skopeo{j}.tar").unlink()
            shutil.rmtree(work / f"cache{i}")
    unique = sum(len(layer.data) for layer in [base, *tops]) / 1e6
    t_sk, t_cold, t_warm = (statistics.median(x) for x in (skopeo, cold, warm))
    return [
        (
            f"`skopeo copy` of 2 images ({unique:.0f} MB unique layers) into oci-archives",
            t_sk,
            "unsigned, no dedupe across archives",
        ),
        (
            "`airlock build` of the same images, empty pull cache",
            t_cold,
            f"{t_cold / t_sk:.2f}× skopeo; signed, verified, shared layer once",
        ),
        (
            "`airlock build` again, warm pull cache",
            t_warm,
            f"{t_warm / t_sk:.2f}× skopeo; no blob downloaded",
        ),
    ]


def _trust(work: Path) -> tuple[Path, Path]:
    """A release key and a trust root trusting it."""
    from keys.keyfile import generate_keypair, load_public_key, load_signer
    from keys.trust import create_root

    root_key, _ = generate_keypair("root", work / "keys")
    rel_key, rel_pub = generate_keypair("release", work / "keys")
    trust = work / "keys" / "root.json"
    trust.write_bytes(create_root([load_signer(root_key)], [load_public_key(rel_pub)]).to_bytes())
    return rel_key, trust


def bench_sneakernet(work: Path, mb: int, repeats: int) -> list[Row]:
    """A release whose only change is a new 20 MB model beside MB of unchanged image layers:
    full vs delta size, install from parts vs joined, a resumed push vs a full one."""
    import modelkit
    import ocikit

    from bundler.push import push_files
    from bundler.ssh import Login, Target
    from keys.release import Release
    from tests.support.sshd import Sshd

    key, trust = _trust(work)
    layers = [ocikit.random_layer(mb * 1024 * 1024 // 4, seed=300 + i, name=f"l{i}.bin")
              for i in range(4)]
    image_mb = sum(len(x.data) for x in layers) / 1e6
    with ocikit.Registry.start(work / "registry") as reg:
        ref = f"{reg.host}/site/app:1"
        ocikit.push(ocikit.write_image(work / "img", "1", layers), "1", ref)
        shutil.rmtree(work / "img")
        specs = {}
        for seq in (1, 2):
            modelkit.make(work / f"m{seq}", 1.0 + seq, pad_mb=20)
            specs[seq] = work / f"v{seq}.yaml"
            specs[seq].write_text(
                f"name: site\nversion: '{seq}'\nsequence: {seq}\nimages:\n  - {ref}\n"
                f"models:\n  - name: m\n    path: m{seq}/model.onnx\n    health:\n"
                f"      inputs: m{seq}/inputs.npz\n      outputs: m{seq}/outputs.npz\n")

        def build(seq: int, out: Path, *extra: object) -> float:
            t = time.perf_counter()
            _tool(sys.executable, "-m", "bundler", "build", specs[seq], "--key", key, "-o", out,
                  "--insecure", reg.host, "--cache", work / "cache", *extra)
            return time.perf_counter() - t

        build(1, work / "v1.airlock")
        build(2, work / "v2.airlock")
        device = work / "device"
        _agent(device, "init", "--trust", trust)
        _agent(device, "install", work / "v1.airlock")
        _agent(device, "inventory", "-o", work / "inventory.json")
        t_delta_build = build(2, work / "v2-delta.airlock", "--delta-from",
                              work / "inventory.json")
    full, delta = (work / "v2.airlock").stat().st_size, (work / "v2-delta.airlock").stat().st_size

    def files(path: Path) -> dict[str, int]:
        from airlock.bundle import BundleReader

        with path.open("rb") as f:
            release = Release.from_bytes(BundleReader(f).head().release_json)
        return {p: i.length for p, i in release.files.items()}

    old, new = files(work / "v1.airlock"), files(work / "v2.airlock")
    changed = sum(n for p, n in new.items() if old.get(p) != n)
    t = time.perf_counter()
    _agent(device, "install", work / "v2-delta.airlock")
    t_delta_install = time.perf_counter() - t

    # Install time from the joined bundle and from its parts, the same run, fresh devices.
    _tool(sys.executable, "-m", "bundler", "split", work / "v2.airlock", "--max-size", "64MiB")
    nparts = len(list(work.glob("v2.airlock.part[0-9]*")))
    joined_s: list[float] = []
    parts_s: list[float] = []
    verify_joined: list[float] = []
    verify_parts: list[float] = []
    for i in range(repeats):
        for source, into in ((work / "v2.airlock", joined_s),
                             (work / "v2.airlock.part001", parts_s)):
            root = work / f"fresh-{i}"
            _agent(root, "init", "--trust", trust)
            t = time.perf_counter()
            _agent(root, "install", source)
            into.append(time.perf_counter() - t)
            shutil.rmtree(root)
        for source, into in ((work / "v2.airlock", verify_joined),
                             (work / "v2.airlock.part001", verify_parts)):
            t = time.perf_counter()
            _tool(sys.executable, "-m", "bundler", "verify", source, "--trust", trust)
            into.append(time.perf_counter() - t)

    # A push cut off halfway, then resumed: only the rest travels.
    with Sshd.start(work / "sshd") as server:
        known = work / "known_hosts"
        known.write_text(server.known_hosts_line())
        login = Login(server.user, server.identity, known)
        target = Target.parse(server.address)
        t = time.perf_counter()
        whole = push_files(target, [work / "v2.airlock"], login, str(work / "dest-full"))
        t_push = time.perf_counter() - t
        sent = 0

        def cut(host: str, n: int) -> None:
            nonlocal sent
            sent += n
            if sent >= full // 2:
                server.drop_connections()

        push_files(target, [work / "v2.airlock"], login, str(work / "dest-cut"), cut)
        t = time.perf_counter()
        resumed = push_files(target, [work / "v2.airlock"], login, str(work / "dest-cut"))
        t_resume = time.perf_counter() - t
    assert whole.ok and resumed.ok, (whole.error, resumed.error)
    med = statistics.median
    return [
        (f"full bundle: {image_mb:.0f} MB image layers + new 20 MB model", 0.0,
         f"{full / 1e6:.1f} MB"),
        ("delta against the device's inventory (build time)", t_delta_build,
         f"{delta / 1e6:.2f} MB = {delta / full:.1%} of full; changed bytes "
         f"{changed / 1e6:.2f} MB, delta is {(delta - changed) / changed:+.2%} of them"),
        ("`airlock-agent install` of the delta on the device holding release 1",
         t_delta_install, "health check included"),
        ("`airlock-agent install` from the joined bundle, fresh device", med(joined_s),
         f"{full / 1e6:.0f} MB, image sink and health check included"),
        (f"`airlock-agent install` from its {nparts} parts of 64 MiB", med(parts_s),
         f"{med(parts_s) / med(joined_s):.2f}× joined"),
        ("`airlock verify` of the joined bundle", med(verify_joined), ""),
        (f"`airlock verify` of the {nparts} parts", med(verify_parts),
         f"{med(verify_parts) / med(verify_joined):.2f}× joined"),
        ("`airlock fleet push` of the full bundle over SFTP, loopback", t_push,
         f"{whole.bytes_sent / 1e6:.1f} MB sent"),
        ("…the same push cut off halfway, then resumed", t_resume,
         f"{resumed.bytes_sent / 1e6:.1f} MB sent on resume "
         f"({resumed.bytes_sent / whole.bytes_sent:.0%} of full), after "
         f"{resumed.files[0].resumed_from / 1e6:.1f} MB checked on the device"),
    ]


SECTIONS: dict[str, Callable[[Path, int, int], list[Row]]] = {
    "build": bench_build,
    "install": bench_install,
    "health": bench_health,
    "registry": bench_registry,
    "sneakernet": bench_sneakernet,
}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mb", type=int, default=500, help="model size in MB (registry section: 300)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=sorted(SECTIONS), action="append")
    a = p.parse_args()
    print("| section | what | median s | figure |\n| --- | --- | --- | --- |")
    for name in a.only or list(SECTIONS):
        work = Path(tempfile.mkdtemp(prefix=f"airlock-bench-{name}-"))
        try:
            mb = min(a.mb, 300) if name == "registry" else a.mb
            for what, secs, note in SECTIONS[name](work, mb, a.repeats):
                print(f"| {name} | {what} | {secs:.3f} | {note} |", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
