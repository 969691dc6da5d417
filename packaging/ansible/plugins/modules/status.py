#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""airlock.edge.status: ``airlock-agent status --json`` as the fact ``airlock_status``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: status
short_description: The device's active and previous release, hold, state and damage
description:
  - Runs C(airlock-agent status --json) on the device and returns its object as the fact
    C(airlock_status) (and as C(status)).
  - Reads only; it never reports a change. As the agent itself does, a status call completes
    the recovery of an install a crash interrupted, when nothing else holds the lock.
extends_documentation_fragment:
  - airlock.edge.agent
author: Airlock maintainers
"""

EXAMPLES = r"""
- airlock.edge.status:
    root: /var/lib/airlock
- ansible.builtin.debug:
    msg: "{{ airlock_status.active.id }}"
"""

RETURN = r"""
status:
  description: The agent's status object (active, previous, hold, state, damage, disk ...).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
    AGENT_OPTIONS, Agent)


def main():
    module = AnsibleModule(argument_spec=dict(AGENT_OPTIONS), supports_check_mode=True)
    status = Agent(module).json("status")
    module.exit_json(changed=False, status=status, ansible_facts={"airlock_status": status})


if __name__ == "__main__":
    main()
