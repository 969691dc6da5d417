# -*- coding: utf-8 -*-
# Apache-2.0 (see the Airlock repository's pyproject.toml)
"""What every airlock.edge module shares: how to run ``airlock-agent ... --json`` on the device.

    from ansible_collections.airlock.edge.plugins.module_utils.airlock_agent import (
        AGENT_OPTIONS, Agent)

    module = AnsibleModule(argument_spec={**AGENT_OPTIONS, ...}, supports_check_mode=True)
    agent = Agent(module)
    status = agent.json("status")           # the agent's --json object; on failure fail_json

The agent is a command line (``agent``, default ``airlock-agent``; split like a
shell would, so ``env PYTHONPATH=/opt/airlock python3 -m agent`` works) and
``root`` its ``--root``. A failure is the agent's own one line (``error`` of its
--json object, else the last line of its standard error) and its exit code:
2 usage, 3 rejected, 4 health check failed (the device is back on its previous
release), 5 precondition (lock held, disk full, not initialised).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import shlex

AGENT_OPTIONS = {
    "agent": {"type": "str", "default": "airlock-agent"},
    "root": {"type": "path"},
}


class Agent:
    """The agent on this device, as the module's options name it."""

    def __init__(self, module):
        self.module = module

    def command(self, *args):
        argv = shlex.split(self.module.params["agent"])
        if self.module.params.get("root"):
            argv += ["--root", self.module.params["root"]]
        return argv + [str(a) for a in args] + ["--json"]

    def run(self, *args):
        """(exit code, the --json object or None, the one-line error) of ``AGENT ARGS --json``."""
        argv = self.command(*args)
        try:
            rc, out, err = self.module.run_command(argv)
        except OSError as e:  # run_command raises only for a missing executable
            return 5, None, "no agent: '%s' is not a command on the device (%s)" % (argv[0], e)
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = None
        lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
        why = (doc or {}).get("error") or (lines[-1] if lines else "")
        for prefix in ("airlock-agent: error: ", "airlock-agent: "):
            if why.startswith(prefix):
                why = why[len(prefix):]
        if rc == 127 or "No module named" in why or "command not found" in why:
            rc, why = 5, "no agent: '%s' is not a command on the device" % self.module.params["agent"]
        return rc, doc, why

    def fail(self, what, rc, why, **result):
        """Fail the task with the agent's one line and exit code (``rc``; ``msg`` says both)."""
        self.module.fail_json(msg="airlock-agent %s: %s (exit %d)" % (what, why or "failed", rc),
                              rc=rc, agent_error=why, **result)

    def json(self, *args, **result):
        """The agent's --json object, or the task failed as :meth:`fail` says."""
        rc, doc, why = self.run(*args)
        if rc != 0 or doc is None:
            self.fail(args[0], rc or 5, why or "no JSON answer", result=doc, **result)
        return doc
