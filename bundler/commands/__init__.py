"""Every ``airlock`` command: one module each, named in one registry (pip's ``commands/``).

    from bundler.commands import parser
    parser(["verify", "x.airlock"])     # only verify's module is imported and given its options
    parser()                            # the whole command line (completion, man pages)

A command module follows ``airlock.command``: ``EXAMPLES``, ``DESCRIPTION``,
``add_arguments(p)`` and ``run(args)``, which returns a typed result
(``to_dict()`` for ``--json``, ``text()`` for people; an optional
``finish()`` says what goes to stderr after it and gives the exit code), or
None when it printed its own output. A command group adds its own
subcommands in its module. The modules are named ``airlock_COMMAND`` so that
no two modules of the tree share a name:

- airlock_new: ``new DIR``, a starter spec with a tiny real model
- airlock_keys: ``keys generate|init|rotate|import-public|sign-root|verify-root``
- airlock_sign: ``sign`` (a signature added to a built bundle)
- airlock_check: ``check`` (the devices' health check, here)
- airlock_build: ``build`` (check, then sign one bundle)
- airlock_verify: ``verify``, as a device would
- airlock_serve: ``serve``, bundles verified at start served as a site relay
- airlock_inspect: ``inspect``, what a bundle holds and will run
- airlock_report: ``report enroll|ingest`` at headquarters
- airlock_hq: ``hq status|history|audit|import|inventory``, questions to the ledger
- airlock_diff: ``diff`` of two bundles, or of an inventory and a bundle
- airlock_inventory: ``inventory show``
- airlock_flags: ``flags set``
- airlock_fleet: ``fleet push|hosts|rollout`` over SSH
- airlock_split, airlock_join: bundles in parts for FAT32 media
- airlock_agent_kit: ``agent-kit``, the agent's offline installer
- airlock_completion: ``completion``, shell scripts from the whole parser
- airlock_config: ``config show``, the host settings in force and where each came from
- airlock_time_token: ``time-token``, a signed time for devices without a trusted clock
- airlock_direct: ``direct``, a signed visit saying which device takes which release
- options: what several commands take (key unlocking, spec options, subcommands)
- signing_steps: what ``sign`` and ``keys sign-root`` share (files, prompt, merge)
"""

from __future__ import annotations

from collections.abc import Sequence

from airlock.command import CommandInfo, build_parser
from airlock.console import Parser

__all__ = ["DESCRIPTION", "REGISTRY", "TOUR", "parser"]

DESCRIPTION = """\
airlock: the connected host's side of Airlock. It checks ONNX models with the
devices' own health check, signs them and container images into one offline
bundle (NAME-VERSION.airlock), and verifies and inspects bundles.
airlock-agent on each device installs them.
"""

TOUR = (
    "airlock new .",
    "airlock keys generate root --dir keys --passphrase-env AIRLOCK_PASS",
    "airlock keys generate release --dir keys --passphrase-env AIRLOCK_PASS",
    "airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json",
    "airlock check airlock.yaml",
    "airlock build airlock.yaml --key keys/release.key -o vision-1.2.0.airlock",
    "airlock verify vision-1.2.0.airlock --trust root.json",
    "airlock inspect vision-1.2.0.airlock",
)


def _info(name: str, summary: str) -> CommandInfo:
    return CommandInfo(name, f"bundler.commands.airlock_{name.replace('-', '_')}", summary)


#: In the order ``airlock --help`` lists them.
REGISTRY: tuple[CommandInfo, ...] = (
    _info("new", "start a project: a spec, a tiny real model and its golden data"),
    _info("keys", "make signing keys and trust roots (generate, init, rotate)"),
    _info("sign", "add a signature to a built bundle: only its metadata is rewritten, no blob"),
    _info("check", "run the devices' health check on a spec's models, here; sign and write "
          "nothing"),
    _info("build", "check a spec's models, then sign them and its images into one bundle"),
    _info("verify", "check a bundle's signatures, expiry and every blob, as a device would"),
    _info("serve", "serve verified bundles as a read-only OCI registry and /bundles/ (a site "
          "relay)"),
    _info("inspect", "show what a bundle holds and will run: models, images, hooks, signers, "
          "expiry, sizes"),
    _info("report", "enroll device keys and read the reports devices send home"),
    _info("hq", "ask headquarters' ledger: fleet status, a device's history, the audit log"),
    _info("diff", "what changed between two bundles, or between a device inventory and a "
          "bundle"),
    _info("inventory", "read device inventories"),
    _info("flags", "build a signed feature-flags bundle"),
    _info("fleet", "reach site devices over SSH"),
    _info("split", "cut a bundle into parts for FAT32 media (BUNDLE.part001… and "
          "BUNDLE.parts.json)"),
    _info("join", "reassemble a split bundle into one file, checking every part"),
    _info("agent-kit", "build the signed offline installer of the agent for one device "
          "platform"),
    _info("completion", "print a shell completion script for airlock"),
    _info("config", "show the host settings in force (key, cache, registries, fleet) and "
          "where each came from"),
    _info("time-token", "sign the current time for devices whose clock is wrong (airlock-agent "
          "time apply)"),
    _info("direct", "sign a visit: which device installs which release, stays or rolls back "
          "(devices initialised --directed)"),
)


def parser(argv: Sequence[str] | None = None) -> Parser:
    """The ``airlock`` parser; with ``argv``, only the command it names gets its options."""
    return build_parser("airlock", DESCRIPTION, TOUR, REGISTRY, argv=argv)
