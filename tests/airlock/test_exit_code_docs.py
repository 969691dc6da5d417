"""One exit-code table, generated from ``airlock/errors.py``, in every document that shows one.

A document whose table differs from ``EXIT_CODES`` (a 4 where the code says 5)
fails here; ``python scripts/exit_codes.py`` rewrites them all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airlock.errors import EXIT_CODES, RegistryUnavailableError
from scripts.exit_codes import DOCUMENTS, REPO, main, rendered
from tests.support.cli import run_agent, run_airlock


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_document_shows_the_table_the_code_has(name: str) -> None:
    text = (REPO / name).read_text(encoding="utf-8")
    assert rendered(text, name) == text, f"run 'python scripts/exit_codes.py' ({name})"
    # And no second, hand-written table of exit codes anywhere in it.
    assert text.count("| code | meaning |") == 1


def test_the_check_fails_on_a_table_that_differs(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import scripts.exit_codes as tool

    fake = tmp_path / "repo"
    for name in DOCUMENTS:
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text((REPO / name).read_text(encoding="utf-8"), encoding="utf-8")
    cli = fake / "docs" / "CLI.md"
    cli.write_text(cli.read_text().replace("| 5 | precondition", "| 4 | precondition"))
    monkeypatch.setattr(tool, "REPO", fake)
    assert main(["--check"]) == 1
    assert main([]) == 0 and main(["--check"]) == 0  # rewritten from the code


def test_help_ends_with_the_same_codes_and_a_registry_the_host_cannot_reach_is_5() -> None:
    for run in (run_airlock, run_agent):
        out = run("--help").stdout
        assert [int(c) for c in re.findall(r"^  (\d)  ", out, re.M)] == [c for c, _ in EXIT_CODES]
    assert RegistryUnavailableError("x").exit_code == 5
    assert "registry the host pulls from unreachable" in dict(EXIT_CODES)[5]
    assert "image sink delivery" in dict(EXIT_CODES)[4]
