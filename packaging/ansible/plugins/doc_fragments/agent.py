# -*- coding: utf-8 -*-
# The options every module of the collection takes: how to run the agent on the device.
# Modules name it with ``extends_documentation_fragment: airlock.edge.agent``.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  agent:
    description: The agent's command line on the device, split as a shell would.
    type: str
    default: airlock-agent
  root:
    description: The agent's ROOT (C(--root)); the agent's default when omitted.
    type: path
"""
