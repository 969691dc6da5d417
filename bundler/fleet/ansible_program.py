"""``ansible-inventory -i INV --list``, run as a program when the site has Ansible.

Ansible itself then reads the inventory: INI, YAML, ranges, vars directories,
dynamic inventory scripts and plugins, vault. Airlock never imports Ansible
(its licence and its size stay out of the bundler); it reads the JSON the
program prints::

    program = find_ansible_inventory()          # None when Ansible is not installed
    if program:
        doc = ansible_list(program, Path("site.ini"))
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from airlock.errors import UsageError
from airlock.limits import MAX_INVENTORY_BYTES

__all__ = ["ANSIBLE_TIMEOUT", "ansible_list", "find_ansible_inventory"]

#: A dynamic inventory may ask a cloud API; a hung one must not hang a rollout.
ANSIBLE_TIMEOUT = 120.0


def find_ansible_inventory() -> str | None:
    """``ansible-inventory`` on PATH, else beside this Python (a virtualenv's bin/)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def ansible_list(program: str, path: Path) -> dict[str, Any]:
    """The JSON document ``program -i path --list`` prints; exit 2 when Ansible refuses it."""
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "PYTHONWARNINGS": "ignore",
           # An inventory Ansible cannot parse is an error, not an empty site with a warning.
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    try:
        done = subprocess.run([program, "-i", str(path), "--list"], capture_output=True, env=env,
                              timeout=ANSIBLE_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UsageError(f"ansible-inventory did not answer within {ANSIBLE_TIMEOUT:.0f}s "
                         f"for {path}") from None
    except OSError as e:
        raise UsageError(f"cannot run {program}: {e.strerror}") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode(errors="replace").splitlines()
                 if ln.strip() and "Warning" not in ln and not ln.startswith("  ")]
        why = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise UsageError(f"ansible-inventory refused {path}: {why}")
    if len(done.stdout) > 16 * MAX_INVENTORY_BYTES:
        raise UsageError(f"ansible-inventory printed more than {16 * MAX_INVENTORY_BYTES} bytes "
                         f"for {path}")
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise UsageError(f"ansible-inventory printed no JSON for {path}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"ansible-inventory printed no inventory for {path}")
    return doc
