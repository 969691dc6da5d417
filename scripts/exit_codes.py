"""Write the one exit-code table into every document that shows it, from ``airlock/errors.py``.

    python scripts/exit_codes.py            # README.md, docs/CLI.md, docs/AGENT.md, docs/REGISTRIES.md
    python scripts/exit_codes.py --check    # exit 1 if a document's table differs (the tests do this)

The table lives between two marker lines (``airlock.errors.EXIT_CODES_BEGIN`` and
``EXIT_CODES_END``); what is between them is replaced by
``airlock.errors.exit_codes_markdown()``, the same ``EXIT_CODES`` every
``--help`` ends with, so a document cannot say 4 where the code says 5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airlock.errors import EXIT_CODES_BEGIN, EXIT_CODES_END, exit_codes_markdown  # noqa: E402

#: Every document that shows the exit codes.
DOCUMENTS = ("README.md", "docs/CLI.md", "docs/AGENT.md", "docs/REGISTRIES.md")


def rendered(text: str, where: str) -> str:
    """``text`` with its table replaced by the generated one; ValueError if it has none."""
    start, end = text.find(EXIT_CODES_BEGIN), text.find(EXIT_CODES_END)
    if start < 0 or end < start:
        raise ValueError(f"{where} has no exit-code table between the markers")
    return text[:start] + exit_codes_markdown() + text[end + len(EXIT_CODES_END):]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only say which documents differ")
    a = p.parse_args(argv)
    stale = []
    for name in DOCUMENTS:
        path = REPO / name
        text = path.read_text(encoding="utf-8")
        new = rendered(text, name)
        if new != text:
            stale.append(name)
            if not a.check:
                path.write_text(new, encoding="utf-8")
    if a.check and stale:
        print(f"exit-code table out of date in {', '.join(stale)}; run "
              "'python scripts/exit_codes.py'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
