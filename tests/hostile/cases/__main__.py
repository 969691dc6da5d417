"""``python -m tests.hostile.cases DIR``: write the whole corpus to DIR (fresh keys)."""

import sys

from tests.hostile.cases import main

raise SystemExit(main(sys.argv[1:]))
