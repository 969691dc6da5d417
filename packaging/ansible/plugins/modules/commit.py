#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""airlock.edge.commit: make a held install (``install`` with ``hold``) final."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: commit
short_description: Make a held release final (airlock-agent commit)
description:
  - Asks C(airlock-agent status --json) whether a release is held (installed with O(hold)
    by M(airlock.edge.install), waiting for a commit before its deadline). If one is, runs
    C(airlock-agent commit --json); without a hold nothing is pending and the task reports
    no change.
  - In check mode it reports whether it would commit and changes nothing.
  - A hold whose deadline has passed cannot be committed (the agent reverts it); the task
    fails with the agent's line and exit code 5.
extends_documentation_fragment:
  - airlock.edge.agent
author: Airlock maintainers
"""

EXAMPLES = r"""
- airlock.edge.commit:
    root: /var/lib/airlock
"""

RETURN = r"""
committed:
  description: The release made final; null when nothing was held.
  returned: success
  type: str
previous:
  description: The release that is no longer armed to come back.
  returned: when committed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
    AGENT_OPTIONS, Agent)


def main():
    module = AnsibleModule(argument_spec=dict(AGENT_OPTIONS), supports_check_mode=True)
    agent = Agent(module)
    hold = agent.json("status").get("hold")
    if not hold:
        module.exit_json(changed=False, committed=None, msg="nothing is held")
    if module.check_mode:
        module.exit_json(changed=True, committed=hold.get("release"),
                         previous=hold.get("previous"),
                         msg="would commit %s" % hold.get("release"))
    done = agent.json("commit")
    module.exit_json(changed=True, committed=done.get("committed"), previous=done.get("previous"),
                     result=done)


if __name__ == "__main__":
    main()
