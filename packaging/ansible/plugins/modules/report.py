#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""airlock.edge.report: a report signed by the device key, written on the device."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: report
short_description: Write the device's signed report (journal since the last one, health, inventory)
description:
  - Runs C(airlock-agent report -o DEST --since last --json) on the device. The report is
    what C(airlock report ingest) reads at headquarters; fetch it with M(ansible.builtin.fetch).
  - Idempotent. When the journal has no entry since the last report and O(dest) already
    holds a report, the new one (which would differ only in its moment) is discarded and the
    task reports no change.
  - In check mode nothing is written, and the last-report mark does not move; whether a
    report would be written is judged from C(airlock-agent history --json) against the span
    the report in O(dest) covers.
  - The result (entries, span, bytes) is returned as the fact C(airlock_report).
options:
  dest:
    description: The report file on the device.
    type: path
    required: true
extends_documentation_fragment:
  - airlock.edge.agent
author: Airlock maintainers
"""

EXAMPLES = r"""
- airlock.edge.report:
    dest: /var/tmp/airlock/report.json
- ansible.builtin.fetch:
    src: /var/tmp/airlock/report.json
    dest: "reports/{{ inventory_hostname }}.report.json"
    flat: true
"""

RETURN = r"""
entries:
  description: Journal entries the report carries.
  returned: when written
  type: int
to_line:
  description: The last journal line the report covers.
  returned: success
  type: int
"""

import base64
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
    AGENT_OPTIONS, Agent)


def covered(path):
    """The last journal line the signed report in ``path`` covers; None without one."""
    try:
        with open(path, "rb") as f:
            body = json.loads(base64.b64decode(json.load(f)["payload"]))
        return int(body["journal"]["to_line"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _journal_lines(agent):
    """The journal's last line number: the oldest line kept plus the entries since."""
    history = agent.json("history")
    return int(history.get("first_line") or 1) - 1 + len(history.get("entries") or [])


def main():
    module = AnsibleModule(argument_spec=dict(AGENT_OPTIONS, dest={"type": "path", "required": True}),
                           supports_check_mode=True)
    agent = Agent(module)
    dest = module.params["dest"]
    before = covered(dest)
    if module.check_mode:
        lines = _journal_lines(agent)
        changed = before is None or lines > before
        module.exit_json(changed=changed, dest=dest, to_line=before,
                         msg=("would write a report to %s" % dest) if changed
                         else "no journal entry since the report in %s" % dest)
    directory = os.path.dirname(dest) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fresh = os.path.join(directory, ".%s.airlock-new" % os.path.basename(dest))
    try:
        written = agent.json("report", "-o", fresh)
        if before is not None and not written.get("entries"):
            os.remove(fresh)
            module.exit_json(changed=False, dest=dest, entries=0, to_line=written.get("to_line"),
                             msg="no journal entry since the report in %s" % dest,
                             ansible_facts={"airlock_report": written})
        os.rename(fresh, dest)
    finally:
        if os.path.exists(fresh):
            os.remove(fresh)
    written["output"] = dest
    module.exit_json(changed=True, dest=dest, entries=written.get("entries"),
                     to_line=written.get("to_line"), result=written,
                     ansible_facts={"airlock_report": written})


if __name__ == "__main__":
    main()
