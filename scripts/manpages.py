"""Write the man pages of both command lines into docs/man/, from their own argparse parsers.

    python scripts/manpages.py            # docs/man/airlock.1, docs/man/airlock-agent.1
    python scripts/manpages.py --check    # exit 1 if a page is out of date (the test suite does this)
    man ./docs/man/airlock.1

Made with argparse-manpage (the [dev] extra) from ``bundler.cli.parser()`` and
``agent.cli.parser()``: the same parsers that parse the options, print
``--help`` and feed the shell completion (shtab), so a page cannot name an
option the tool does not have. The date is the package version's, not today's,
so the pages are the same on every machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "man"


def pages() -> dict[str, str]:
    """File name -> roff text of each tool's man page."""
    from argparse_manpage.manpage import Manpage

    from agent.cli import parser as agent_parser
    from airlock.console import tool_version
    from bundler.cli import parser as bundler_parser

    tools: dict[str, tuple[Callable[[], argparse.ArgumentParser], str]] = {
        "airlock": (bundler_parser, "check, sign and inspect offline bundles of ONNX models "
                    "and container images"),
        "airlock-agent": (agent_parser, "verify, install, health-check and roll back Airlock "
                          "bundles on a device"),
    }
    os.environ["COLUMNS"] = "80"  # argparse wraps usage to the terminal: the same everywhere
    version = tool_version()
    out = {}
    for prog, (make, summary) in tools.items():
        parser = make()
        data = {"version": version, "project_name": "airlock-edge", "manual_section": 1,
                "manual_title": "Airlock manual", "date": version, "description": summary}
        out[f"{prog}.1"] = str(Manpage(parser, _data=data))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    a = p.parse_args()
    stale = []
    for name, text in pages().items():
        path = OUT / name
        if a.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(REPO))
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/manpages.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
