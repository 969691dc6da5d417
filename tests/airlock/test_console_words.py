"""What both tools say when the command line or the operator stops them: words, not Python."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.support.cli import run_agent, run_airlock


@pytest.mark.parametrize(("tool", "argv", "says"), [
    (run_airlock, ("verfy", "x.airlock"), "invalid choice: 'verfy'; did you mean 'verify'?"),
    (run_airlock, ("keys", "genrate", "root"), "did you mean 'generate'?"),
    (run_agent, ("rolback",), "invalid choice: 'rolback'; did you mean 'rollback'?"),
])
def test_a_mistyped_subcommand_names_the_nearest_one(
        tool: Callable[..., subprocess.CompletedProcess[str]], argv: tuple[str, ...],
        says: str) -> None:
    r = tool(*argv)
    assert r.returncode == 2
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_word_far_from_every_command_still_lists_them() -> None:
    r = run_airlock("zzzz")
    assert r.returncode == 2 and "choose from" in r.stderr and "did you mean" not in r.stderr


def test_ctrl_c_says_interrupted_by_sigint_and_exits_130(
        capsys: pytest.CaptureFixture[str]) -> None:
    from airlock.console import run

    def main(argv: list[str]) -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        run(main, [], "airlock")
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert err.strip() == "airlock: interrupted by SIGINT"
    assert "KeyboardInterrupt" not in err
