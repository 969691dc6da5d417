#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""airlock.edge.install: ``airlock-agent install BUNDLE --json``, idempotent and check-mode aware."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: install
short_description: Verify, store, health-check and switch to a signed Airlock bundle
description:
  - Runs C(airlock-agent install BUNDLE --json) on the device; the agent checks the
    signatures, stores the blobs, health-checks the models and switches. A failed health
    check has already put the device back on its previous release (exit 4).
  - Idempotent. A bundle of the release that is already active changes nothing (the agent
    still reads it whole and says whether the device's copy is intact); the task then
    reports no change unless the agent had to repair store blobs from it.
  - In check mode nothing is run that writes. The release named in the bundle's metadata
    (read, not verified; the agent verifies when it installs) is compared with the active one
    from C(airlock-agent status --json).
  - The result is returned as the fact C(airlock_install).
options:
  bundle:
    description: The bundle file on the device (or its first part, its parts.json, or the
      directory of its parts).
    type: path
    required: true
  hold:
    description: Switch, but go back to the previous release unless M(airlock.edge.commit)
      comes within this many seconds.
    type: float
  switch:
    description: Switch to the release; C(false) installs and health-checks only.
    type: bool
    default: true
  wait:
    description: Seconds to wait for another agent command to finish (else exit 5).
    type: float
    default: 0
extends_documentation_fragment:
  - airlock.edge.agent
author: Airlock maintainers
"""

EXAMPLES = r"""
- airlock.edge.install:
    bundle: /var/tmp/airlock/vision-1.3.0.airlock
    root: /var/lib/airlock
    hold: 900
"""

RETURN = r"""
release:
  description: The id (NAME-SEQUENCE) of the bundle's release.
  returned: success
  type: str
active:
  description: The release active afterwards.
  returned: success
  type: str
installed:
  description: Whether the agent installed it (false when it was already active).
  returned: success
  type: bool
result:
  description: The agent's whole --json object (on failure too, when it gave one).
  returned: always
  type: dict
"""

import json
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
    AGENT_OPTIONS, Agent)

_RELEASE_MEMBER = "airlock/release.json"


def bundle_release(path):
    """``NAME-SEQUENCE`` the bundle's metadata names, unverified; None if not read.

    The metadata is the first member of the tar (a root.json may precede it), so only the
    front of the file is read.
    """
    if not os.path.isfile(path):
        return None
    try:
        with tarfile.open(path, "r|") as tar:
            for n, member in enumerate(tar):
                if member.name == _RELEASE_MEMBER:
                    signed = json.load(tar.extractfile(member))["signed"]
                    name = signed["airlock"]["name"]
                    return "%s-%d" % (name, signed["version"])
                if n > 2:
                    return None
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError):
        return None
    return None


def _check(module, agent):
    p = module.params
    active = (agent.json("status").get("active") or {}).get("id")
    release = bundle_release(p["bundle"])
    if release is None:
        why = ("not on the device yet" if not os.path.exists(p["bundle"])
               else "its release is read when it is installed")
        module.exit_json(changed=True, release=None, active=active,
                         msg="would install %s (%s)" % (p["bundle"], why))
    if release == active:
        module.exit_json(changed=False, release=release, active=active,
                         msg="%s is already active" % release)
    verb = "would install %s" % release
    if p["switch"]:
        verb += " and switch from %s" % (active or "no release")
    module.exit_json(changed=True, release=release, active=active, msg=verb)


def main():
    module = AnsibleModule(
        argument_spec=dict(AGENT_OPTIONS, bundle={"type": "path", "required": True},
                           hold={"type": "float"}, switch={"type": "bool", "default": True},
                           wait={"type": "float", "default": 0}),
        supports_check_mode=True)
    agent = Agent(module)
    p = module.params
    if module.check_mode:
        _check(module, agent)
    args = ["install", p["bundle"], "--wait", p["wait"]]
    if p["hold"] is not None:
        args += ["--hold", p["hold"]]
    if not p["switch"]:
        args.append("--no-switch")
    rc, doc, why = agent.run(*args)
    if rc != 0 or doc is None:
        agent.fail("install", rc or 5, why, result=doc)
    changed = bool(doc.get("installed") or doc.get("applied") is True
                   or doc.get("repaired") or doc.get("relinked"))
    module.exit_json(changed=changed, release=doc.get("release") or doc.get("id"),
                     active=doc.get("active"), installed=bool(doc.get("installed")),
                     msg=doc.get("message") or "installed %s" % doc.get("release"),
                     result=doc, ansible_facts={"airlock_install": doc})


if __name__ == "__main__":
    main()
