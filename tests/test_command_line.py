"""Both command lines behave like well-made Unix tools (rauc, mender-artifact, skopeo, zarf).

Help on every command and option, an example and the exit codes in every
``--help``, ``--version``, help for a bare command, quiet/verbose/progress
switches, shell completion and man pages made from the same parsers, closed
pipes, and one JSON object for a failure under ``--json``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_agent, run_airlock, tool_env
from tests.support.device import init_device
from tests.support.keyset import Keys
from tests.support.spec import write_spec

# What reST/Markdown would leave in a help text that argparse prints verbatim.
_MARKUP = re.compile(r"``|:func:|:class:|:data:|:mod:|\*\*|\\n")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from agent.cli import parser as agent_parser
    from bundler.cli import parser as bundler_parser

    return {"airlock": bundler_parser(), "airlock-agent": agent_parser()}


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _walk(sub)


def test_every_command_has_an_example_exit_codes_and_help_on_every_option() -> None:
    commands = 0
    for top in _parsers().values():
        for parser in _walk(top):
            commands += 1
            text = parser.format_help()
            where = parser.prog
            assert re.search(r"^examples?:\n  \S", text, re.M), f"{where}: no example"
            assert "exit codes:\n  0  done" in text, f"{where}: no exit codes"
            assert not _MARKUP.search(text), f"{where}: markup left in --help"
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for choice in action.choices:
                        assert choice in text, f"{where}: subcommand {choice} not listed"
                    continue
                label = "/".join(action.option_strings) or action.dest
                assert action.help and action.help.strip(), f"{where} {label}: no help text"
                for option in action.option_strings:
                    assert option in text, f"{where}: {option} undocumented in --help"
                if action.choices:
                    assert all(str(c) in text for c in action.choices), \
                        f"{where} {label}: choices not listed"
    assert commands >= 16


def test_version_on_both_tools() -> None:
    for run, prog in ((run_airlock, "airlock"), (run_agent, "airlock-agent")):
        r = run("--version")
        assert r.returncode == 0
        # The agent adds what it runs on (platform, Python, kit or pip): issue 17.
        assert re.fullmatch(rf"{prog} \d+\.\d+\S*( \(.*\))?\n", r.stdout), r.stdout


@pytest.mark.parametrize("args", [("bundler",), ("bundler", "keys"), ("agent",)])
def test_a_bare_command_prints_its_help(args: tuple[str, ...]) -> None:
    from tests.support.cli import run_tool

    r = run_tool(*args)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: ") and "arguments are required" not in r.stdout
    assert "exit codes:" in r.stdout


def test_closed_pipes_end_quietly(keyset: Keys, tmp_path: Path) -> None:
    root = init_device(tmp_path / "device", keyset)
    tool = f"{sys.executable} -m agent --root {root}"
    # head -1 reads one line; 'true' reads nothing and is gone before the agent writes.
    for reader in ("head -1", "true"):
        for cmd in ("status", "history", "status --json"):
            r = subprocess.run(["bash", "-c", f"{tool} {cmd} | {reader}; exit ${{PIPESTATUS[0]}}"],
                               capture_output=True, text=True, env=tool_env(), timeout=60)
            assert r.returncode == 0, (cmd, reader, r.stderr)
            assert r.stderr == "", (cmd, reader, r.stderr)


def test_json_failures_are_one_json_object(keyset: Keys, tmp_path: Path) -> None:
    cases = [
        (run_agent, ("--root", tmp_path / "nowhere", "status", "--json"), 5, "not an initialised"),
        (run_airlock, ("verify", tmp_path / "missing.airlock", "--trust", keyset.trust, "--json"),
         2, "cannot open bundle"),
        (run_airlock, ("verify", "--json"), 2, "required"),  # a usage error, before parsing ends
        (run_airlock, ("verify", keyset.trust, "--trust", keyset.release_pub, "--json"), 2,
         "not a trust root"),
    ]
    for run, args, code, fragment in cases:
        r = run(*args)
        assert r.returncode == code, (args, r.stderr)
        failure = json.loads(r.stdout)
        assert failure["exit"] == code and fragment in failure["error"], failure
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_failed_check_is_one_json_object_with_its_report(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, wrong=True)
    r = run_airlock("check", spec, "--json")
    assert r.returncode == 4
    report = json.loads(r.stdout)  # one document: the report and the failure together
    assert report["exit"] == 4 and not report["ok"]
    assert report["error"].startswith("health check of model 'detector' failed")
    assert report["models"][0]["worst"]["y"]["ok"] is False


def test_shell_completion_is_generated_from_the_parser() -> None:
    for shell in ("bash", "zsh"):
        r = run_airlock("completion", shell)
        assert r.returncode == 0, r.stderr
        for word in ("build", "inspect", "--enforce-budgets", "--no-check", "--min-validity"):
            assert word in r.stdout, (shell, word)
    r = run_agent("completion", "bash")
    assert r.returncode == 0 and "config" in r.stdout and "--trust-root" in r.stdout
    r = run_airlock("completion", "powershell")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_fish_completes_a_subcommand(tmp_path: Path) -> None:
    for tool, run in (("airlock", run_airlock), ("airlock-agent", run_agent)):
        r = run("completion", "fish")
        assert r.returncode == 0, r.stderr
        assert f"complete -c {tool}" in r.stdout and "install" in r.stdout
    script = tmp_path / "airlock.fish"
    script.write_text(run_airlock("completion", "fish").stdout)
    if shutil.which("fish"):  # the shell itself, where installed: the script completes
        r = subprocess.run(["fish", "-c", f"source {script}; complete -C 'airlock insp'"],
                           capture_output=True, text=True, timeout=30)
        assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["inspect"], (
            r.stdout + r.stderr)


def test_bash_completes_a_subcommand(tmp_path: Path) -> None:
    script = tmp_path / "airlock.bash"
    script.write_text(run_airlock("completion", "bash").stdout)
    probe = (f"source {script}; COMP_WORDS=(airlock insp); COMP_CWORD=1; "
             "COMP_LINE='airlock insp'; COMP_POINT=${#COMP_LINE}; "
             "_shtab_airlock airlock insp airlock; echo \"${COMPREPLY[@]}\"")
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["inspect"], r.stdout + r.stderr


def test_man_pages_match_the_parsers() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts/manpages.py"), "--check"],
                       capture_output=True, text=True, env=tool_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    page = (REPO / "docs/man/airlock.1").read_text()
    for option in (r"\-\-enforce\-budgets", r"\-\-no\-check", r"\-\-fast"):
        assert option in page


def test_quiet_verbose_and_no_progress(keyset: Keys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "q.airlock", "-q")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    r = run_airlock("build", spec, "--key", keyset.release_key, "-o", tmp_path / "v.airlock", "-v")
    assert r.returncode == 0 and "built " in r.stdout
    assert "hashing" in r.stderr and "health check" in r.stderr and "writing" in r.stderr
    r = run_airlock("-q", "verify", tmp_path / "v.airlock", "--trust", keyset.trust, "--json")
    assert json.loads(r.stdout)["ok"]  # -q keeps --json output


def _bars(bundle: Path, keys: Keys, *, stdout_tty: bool, extra: tuple[str, ...] = ()) -> str:
    """stderr of 'airlock verify' with stderr on a terminal, stdout on one or on a pipe."""
    err_master, err_slave = pty.openpty()
    out_master, out_slave = pty.openpty()
    for fd in (err_slave, out_slave):  # a new pty is 0 columns wide: tqdm would draw nothing
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bundler", "verify", str(bundle), "--trust", str(keys.trust),
         *extra],
        stdout=out_slave if stdout_tty else subprocess.DEVNULL, stderr=err_slave,
        env=tool_env({"TERM": "xterm"}))
    os.close(err_slave)
    os.close(out_slave)
    chunks = []
    while True:
        try:
            data = os.read(err_master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(err_master)
    os.close(out_master)
    assert proc.returncode == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_bars_only_when_stdout_and_stderr_are_terminals(keyset: Keys,
                                                                 tmp_path: Path) -> None:
    spec = write_spec(tmp_path, pad_mb=4)
    bundle = tmp_path / "b.airlock"
    assert run_airlock("build", spec, "--key", keyset.release_key, "-o", bundle).returncode == 0
    assert "verifying" in _bars(bundle, keyset, stdout_tty=True)
    assert "verifying" not in _bars(bundle, keyset, stdout_tty=False)
    assert "verifying" not in _bars(bundle, keyset, stdout_tty=True, extra=("--no-progress",))


def test_rollback_names_releases_as_status_does(keyset: Keys, tmp_path: Path,
                                                make_bundle: Callable[..., Path]) -> None:
    root = init_device(tmp_path / "device", keyset)
    for sequence in (1, 2):
        bundle = make_bundle(sequence=sequence, version=f"1.{sequence}.0")
        assert run_agent("--root", root, "install", bundle).returncode == 0
    status = run_agent("--root", root, "status").stdout
    assert "active    vision 1.2.0 (sequence 2)" in status
    r = run_agent("--root", root, "rollback")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    assert first == "rolled back from vision 1.2.0 (sequence 2) to vision 1.1.0 (sequence 1)"
    assert "not re-run" in second and "rollback --check" in second
    again = run_agent("--root", root, "rollback")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == ("switched back from vision 1.1.0 (sequence 1) to "
                                            "vision 1.2.0 (sequence 2)")
