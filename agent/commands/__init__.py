"""The commands of ``airlock-agent``: one module each, named in :data:`REGISTRY`.

Each module follows ``airlock.command``: ``EXAMPLES``, ``DESCRIPTION``,
``add_arguments(p)`` and ``run(args)``, which returns a small result
dataclass (``to_dict()`` for ``--json``, ``text()`` for people) or None. A
module is imported only when its command runs (``build_parser(..., argv=)``).
Every command that changes ROOT goes through ``agent.operations``.

Modules:

- ``agent_init``: lay out ROOT, store the trust root, create the device key;
- ``agent_config``: show or change ring, image sink, trust root, model runtime;
- ``agent_install``: verify, store, health-check and switch to a bundle;
- ``agent_commit``: make a held install final;
- ``agent_promote``: switch to the challenger staged with ``install --no-switch``;
- ``agent_flags``: show, apply or roll back signed feature flags;
- ``agent_time``: the clock against the time floor; apply a signed time token;
- ``agent_visit``: a directed device's last visit; follow a stay or roll-back visit;
- ``agent_status``: releases, agent state, disk use and damage (``--html`` too);
- ``agent_history``: the journal, and a check of its hash chain;
- ``agent_rollback``: switch back to the previous release;
- ``agent_check``: re-run the active release's health check;
- ``agent_gc``: remove old releases and unused blobs;
- ``agent_inventory``: what the device holds, signed with its key;
- ``agent_fsck``: check ROOT; ``--repair`` fixes what it can;
- ``agent_serve``: metrics, drop-folder installs and scheduled checks until stopped;
- ``agent_registry_config``: point containerd, k3s, RKE2 or Docker at a site relay;
- ``agent_report``: a signed report to carry home;
- ``agent_samples``: a signed pack of the device's samples that matter, within a budget;
- ``agent_completion``: a shell completion script;
- ``agent_self_install``: install.sh's last step (``self-install``);
- ``agent_version``: ``--version`` (the tool's option, not a subcommand);
- ``base``: ROOT from the options, the notifier, the result of a library's JSON;
- ``sink_options``: the image-sink options of init and config.

Example::

    from agent.commands import REGISTRY
    info = next(i for i in REGISTRY if i.name == "gc")   # CommandInfo("gc", "agent.commands.agent_gc", …)
"""

from __future__ import annotations

from airlock.command import CommandInfo

__all__ = ["REGISTRY"]

REGISTRY = (
    CommandInfo("init", "agent.commands.agent_init",
                "lay out ROOT, store the trust root, create the device key"),
    CommandInfo("config", "agent.commands.agent_config",
                "show or change the device's ring, image sink, trust root and how its "
                "application runs models"),
    CommandInfo("install", "agent.commands.agent_install",
                "verify, store, health-check and switch to a bundle ('-' reads stdin)"),
    CommandInfo("commit", "agent.commands.agent_commit", "make a held install (install --hold) final"),
    CommandInfo("promote", "agent.commands.agent_promote",
                "switch to the challenger staged with install --no-switch (--hold as install)"),
    CommandInfo("flags", "agent.commands.agent_flags",
                "show effective feature flags; apply or roll back a signed flags set"),
    CommandInfo("time", "agent.commands.agent_time",
                "show the clock against the time floor; apply a signed time token"),
    CommandInfo("visit", "agent.commands.agent_visit",
                "a directed device's last visit; follow a visit that says stay or roll back"),
    CommandInfo("status", "agent.commands.agent_status",
                "show the active and previous release, agent state and disk use"),
    CommandInfo("history", "agent.commands.agent_history", "show the journal of every action"),
    CommandInfo("rollback", "agent.commands.agent_rollback",
                "switch back to the previous release at once"),
    CommandInfo("check", "agent.commands.agent_check", "re-run the health check of the active release"),
    CommandInfo("gc", "agent.commands.agent_gc",
                "remove old releases and unused blobs (never current or previous)"),
    CommandInfo("inventory", "agent.commands.agent_inventory",
                "what this device holds, signed with its device key (for delta bundles)"),
    CommandInfo("fsck", "agent.commands.agent_fsck",
                "check the store, releases, links and journal; --repair fixes what it can"),
    CommandInfo("serve", "agent.commands.agent_serve",
                "run until stopped: /metrics, drop-folder installs, scheduled checks"),
    CommandInfo("registry-config", "agent.commands.agent_registry_config",
                "print or --write the mirror config pointing a runtime at a site relay"),
    CommandInfo("report", "agent.commands.agent_report",
                "write a report signed with the device key, to carry home"),
    CommandInfo("samples", "agent.commands.agent_samples",
                "export the samples that matter (disagreements, drift) in a signed pack"),
    CommandInfo("completion", "agent.commands.agent_completion",
                "print a shell completion script for airlock-agent"),
    CommandInfo("self-install", "agent.commands.agent_self_install",
                "finish installing this agent from a kit (run by the kit's install.sh)"),
)
