"""Code from the working directory or the caller's environment never runs in a child (issue 13, class 1).

The agent runs as root from wherever it was started: a USB stick holding the
bundle, ``/tmp`` for a cron job. Hostile Python modules sit in that directory
and beside the bundle, and the caller's ``PYTHONPATH``/``PYTHONSTARTUP``/
``LD_PRELOAD``/``BASH_ENV`` point at hostile code. Each hostile module
appends ``PID NAME`` to a marker file when imported. ``airlock-agent install``
and ``check`` must succeed as usual with no marker written by any process but
the agent itself (which runs under the environment its caller chose), and
hooks, the image-sink command and the bundler's credential helper see a fixed
directory and an allowlisted environment.

The agent is started the way its console script starts it (a launcher file
in a clean directory, ``PYTHONPATH`` at this checkout), not with
``python -m agent``, which would put the caller's directory on the agent's
own ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.sinks.command import CommandSink
from airlock.format.oci import OCI_MANIFEST
from airlock.registry_credentials import docker_credentials
from keys.release import ImageEntry, Release
from tests.support.cli import REPO, tool_env
from tests.support.device import assert_consistent
from tests.support.keyset import Keys

# Imported by the health child (numpy, onnxruntime, json, ...) or at start-up
# by any Python (sitecustomize, usercustomize, encodings).
HOSTILE_MODULES = ("json", "numpy", "onnxruntime", "sitecustomize", "usercustomize",
                   "threading", "signal", "re", "psutil")
# Variables a child must never inherit from the agent's caller.
NEVER_PASSED = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "LD_PRELOAD", "LD_LIBRARY_PATH",
                "BASH_ENV", "ENV")


def _plant(directory: Path, marker: Path, names: tuple[str, ...] = HOSTILE_MODULES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.py").write_text(
            "import os as _os\n"
            f"with open({str(marker)!r}, 'a') as _f:\n"
            f"    _f.write(f'{{_os.getpid()}} {name}\\n')\n"
        )
    return directory


def _launcher(directory: Path, tool: str = "agent") -> Path:
    """What pip writes as bin/airlock-agent (or bin/airlock for ``tool="bundler"``):
    sys.path[0] is its own (clean) directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("airlock-agent" if tool == "agent" else "airlock")
    path.write_text(f"import sys\nfrom {tool}.cli import main\nsys.exit(main())\n")
    return path


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test environment with PYTHONPATH exactly this checkout (no empty entry: that is cwd)."""
    env = tool_env(extra)
    env["PYTHONPATH"] = str(REPO)
    return env


def _agent(launcher: Path, *args: object, cwd: Path,
           env: dict[str, str]) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run the agent; its pid too, to tell its own imports from a child's."""
    proc = subprocess.Popen([sys.executable, str(launcher), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    return proc.pid, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _markers(marker: Path) -> list[tuple[int, str]]:
    if not marker.exists():
        return []
    return [(int(pid), name) for pid, name in
            (line.split() for line in marker.read_text().splitlines())]


def test_modules_in_cwd_and_beside_the_bundle_never_run(
        keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned.log"
    bundle = make_bundle(sequence=1)
    media = _plant(tmp_path / "usb", marker)  # the stick: bundle and hostile modules
    os.rename(bundle, media / bundle.name)
    cwd = _plant(tmp_path / "cron-cwd", marker)
    launcher = _launcher(tmp_path / "bin")
    root = tmp_path / "device"
    env = _env()

    for cmd in (("init", "--trust", keyset.trust, "--device-id", "cam-1"),
                ("install", media / bundle.name), ("check",)):
        for where in (cwd, media):
            if cmd[0] == "init" and where is media:
                continue
            if cmd[0] == "install" and where is cwd:
                continue
            _, r = _agent(launcher, "--root", root, *cmd, cwd=where, env=env)
            assert r.returncode == 0, (cmd, r.stderr)
            assert _markers(marker) == [], f"hostile code ran during {cmd[0]}"
    # The install was a normal one: the health check ran and passed.
    status = assert_consistent(root)
    assert status["active"]["id"] == "vision-1"
    health = json.loads((root / "releases/vision-1/health.json").read_text())
    assert health["ok"] and health["report"]["models"][0]["p95_ms"] is not None


def test_the_hosts_check_before_signing_runs_nothing_from_the_working_directory(
        keyset: Keys, tmp_path: Path) -> None:
    from tests.support.spec import write_spec

    marker = tmp_path / "pwned.log"
    desk = _plant(tmp_path / "desk", marker)  # the spec, its model and hostile modules together
    spec = write_spec(desk)
    launcher = _launcher(tmp_path / "bin", "bundler")
    for cmd in (("check", spec.name),
                ("build", spec.name, "--key", keyset.release_key, "-o", "v1.airlock")):
        _, r = _agent(launcher, *cmd, cwd=desk, env=_env({"PYTHONSTARTUP": str(desk / "json.py")}))
        assert r.returncode == 0, (cmd, r.stderr)
        assert _markers(marker) == [], f"hostile code ran during {cmd[0]}"
    assert (desk / "v1.airlock").is_file()


def test_callers_python_and_loader_variables_reach_no_child(
        keyset: Keys, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned.log"
    hostile = _plant(tmp_path / "hostile-path", marker, ("numpy", "onnxruntime", "sitecustomize"))
    startup = hostile / "startup.py"
    startup.write_text(f"open({str(marker)!r}, 'a').write('0 pythonstartup\\n')\n")
    shell_rc = hostile / "rc.sh"
    shell_rc.write_text(f"echo 0 shell-rc >> {marker}\n")
    seen = tmp_path / "seen"
    seen.mkdir()
    hook = f"env > {seen}/hook.env; pwd > {seen}/hook.cwd"
    bundle = make_bundle(sequence=1, extra={"hooks": {"post_switch": hook, "probe": "true"}})
    env = _env({
        "PYTHONSTARTUP": str(startup),
        "LD_PRELOAD": "libm.so.6",  # real and harmless: only its passing on is checked
        "LD_LIBRARY_PATH": str(hostile),
        "BASH_ENV": str(shell_rc),
        "ENV": str(shell_rc),
        "SECRET_TOKEN": "do-not-leak",
    })
    env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + str(hostile)
    env["PATH"] = os.pathsep.join((".", "bin", "", env.get("PATH", "/usr/bin:/bin")))
    launcher = _launcher(tmp_path / "bin")
    root = tmp_path / "device"

    agents = set()
    for cmd in (("init", "--trust", keyset.trust), ("install", bundle), ("check",)):
        pid, r = _agent(launcher, "--root", root, *cmd, cwd=tmp_path, env=env)
        assert r.returncode == 0, (cmd, r.stderr)
        agents.add(pid)

    found = _markers(marker)
    # The hostile sitecustomize did run in the agents (their caller chose that
    # environment), which proves it was live; it ran in nothing they started.
    assert {pid for pid, name in found if name == "sitecustomize"} == agents
    assert [(pid, name) for pid, name in found if pid not in agents] == []
    assert assert_consistent(root)["active"]["id"] == "vision-1"

    hook_env = dict(line.split("=", 1) for line in
                    (seen / "hook.env").read_text().splitlines() if "=" in line)
    for name in (*NEVER_PASSED, "SECRET_TOKEN"):
        assert name not in hook_env, f"{name} reached the hook"
    assert all(os.path.isabs(p) for p in hook_env["PATH"].split(os.pathsep)), hook_env["PATH"]
    assert hook_env["AIRLOCK_RELEASE"] == "vision-1"
    assert (seen / "hook.cwd").read_text().strip() == str(root / "releases" / "vision-1")


def test_image_sink_command_runs_in_root_images_with_a_clean_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned.log"
    cwd = tmp_path / "usb"
    cwd.mkdir()
    # A program named like the runtime's, in the caller's directory and on a
    # relative PATH entry: it must not be the one that runs.
    fake = cwd / "importer"
    fake.write_text(f"#!/bin/sh\necho 0 fake-importer >> {marker}\n")
    fake.chmod(0o755)
    real_dir = tmp_path / "sbin"
    real_dir.mkdir()
    real = real_dir / "importer"
    seen = tmp_path / "seen"
    real.write_text(f"#!/bin/sh\npwd > {seen}.cwd\nenv > {seen}.env\n")
    real.chmod(0o755)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", os.pathsep.join((".", str(real_dir), os.environ["PATH"])))
    for name in NEVER_PASSED:
        monkeypatch.setenv(name, str(cwd))

    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(b"{}")
    image = ImageEntry("site:5000/app:1", "sha256:" + "a" * 64, OCI_MANIFEST)
    release = Release("app", "1", 1, datetime.now(timezone.utc), images=[image])
    images = tmp_path / "root" / "images"
    sink = CommandSink.from_config({"type": "command", "command": "importer {archive}"}, images)
    sink.deliver(release, lambda digest: manifest)

    assert not marker.exists(), "the caller's directory supplied the import command"
    assert Path(f"{seen}.cwd").read_text().strip() == str(images)
    env = Path(f"{seen}.env").read_text()
    for name in NEVER_PASSED:
        assert f"\n{name}=" not in f"\n{env}", f"{name} reached the sink command"


def test_credential_helper_is_not_taken_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned.log"
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    answer = '{"Username": "u", "Secret": "s"}'
    for name, where in (("evil", cwd), ("good", tmp_path / "helpers")):
        where.mkdir(exist_ok=True)
        helper = where / f"docker-credential-{name}"
        helper.write_text(f"#!/bin/sh\necho {name} \"$PWD\" \"${{PYTHONPATH:-none}}\" >> {marker}\n"
                          f"echo '{answer}'\n")
        helper.chmod(0o755)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", os.pathsep.join(("", ".", str(tmp_path / "helpers"),
                                                os.environ["PATH"])))
    monkeypatch.setenv("PYTHONPATH", str(cwd))
    config = tmp_path / "config.json"

    config.write_text(json.dumps({"credsStore": "evil"}))
    assert docker_credentials("registry.example", config) is None
    assert not marker.exists(), "a helper in the working directory ran"

    config.write_text(json.dumps({"credsStore": "good"}))
    creds = docker_credentials("registry.example", config)
    assert creds is not None and (creds.user, creds.password) == ("u", "s")
    assert marker.read_text().split() == ["good", "/", "none"]
