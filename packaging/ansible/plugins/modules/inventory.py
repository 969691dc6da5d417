#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""airlock.edge.inventory: ``airlock-agent inventory --json`` as the fact ``airlock_inventory``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: inventory
short_description: What the device holds (releases, blobs, agent, trust), signed by its key
description:
  - Runs C(airlock-agent inventory --json) on the device and returns the inventory as the fact
    C(airlock_inventory), with the device key's id as C(keyid).
  - With O(dest), also writes the signed inventory to that file on the device
    (C(airlock-agent inventory -o DEST)), for C(airlock report ingest) at headquarters. The
    file is rewritten only when what the device holds changed; a second run with nothing
    installed since reports no change. In check mode nothing is written.
options:
  dest:
    description: A file on the device to write the signed inventory to.
    type: path
extends_documentation_fragment:
  - airlock.edge.agent
author: Airlock maintainers
"""

EXAMPLES = r"""
- airlock.edge.inventory:
    root: /var/lib/airlock
    dest: /var/tmp/airlock/inventory.json
"""

RETURN = r"""
inventory:
  description: The inventory the device signed.
  returned: success
  type: dict
keyid:
  description: The id of the device key that signed it.
  returned: success
  type: str
"""

import base64
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
    AGENT_OPTIONS, Agent)

# Fields that change at every signing although nothing on the device did.
_MOMENT = ("time", "generated", "generated_at", "signed_at")


def _body(path):
    """The signed inventory in ``path``, without its moment; None when unreadable."""
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
        body = json.loads(base64.b64decode(doc["payload"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _steady(body)


def _steady(body):
    return {k: v for k, v in body.items() if k not in _MOMENT} if isinstance(body, dict) else body


def main():
    module = AnsibleModule(argument_spec=dict(AGENT_OPTIONS, dest={"type": "path"}),
                           supports_check_mode=True)
    agent = Agent(module)
    found = agent.json("inventory")
    inventory, keyid = found.get("inventory"), found.get("keyid")
    dest = module.params["dest"]
    changed = bool(dest) and _body(dest) != _steady(inventory)
    if changed and not module.check_mode:
        directory = os.path.dirname(dest)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        agent.json("inventory", "-o", dest)
    module.exit_json(changed=changed, dest=dest, inventory=inventory, keyid=keyid,
                     ansible_facts={"airlock_inventory": inventory})


if __name__ == "__main__":
    main()
