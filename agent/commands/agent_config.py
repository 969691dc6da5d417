"""``airlock-agent config``: show or change ring, image sink, trust root and model runtime.

    airlock-agent config --ring prod
    airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider
    airlock-agent config --label npu=hailo --fact cuda_capability=8.7

Showing takes no lock (it answers while an install runs); a change goes
through the envelope (``agent.operations``) and is journaled.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.commands.base import layout_of, tell
from agent.commands.sink_options import sink_options
from airlock.command import Reported
from airlock.console import json_option, read_input
from airlock.errors import UsageError

EXAMPLES = ("airlock-agent config --ring prod",
            "airlock-agent config --sink registry --sink-option registry=10.0.0.5:5000",
            "airlock-agent config --trust-root root-v2.json",
            "airlock-agent config --providers OpenVINOExecutionProvider,CPUExecutionProvider "
            "--no-provider-fallback --intra-op-threads 2",
            "airlock-agent config --label npu=hailo --fact cuda_capability=8.7")
DESCRIPTION = (
    "Show the device's settings, or change them: its ring, its image sink (checked\n"
    "as at init), its trust root, and the ONNX Runtime setup its application uses\n"
    "(execution providers, fallback policy, session options), which every health\n"
    "check and evaluation then uses instead of each release's. A trust root only\n"
    "moves forward: the new one must be the next version, signed by the current\n"
    "root keys and the new ones (as 'airlock keys rotate' makes it). Labels and\n"
    "stated facts (what the probe cannot see) are what a release's model variants\n"
    "select by; NAME= forgets one. Changes are journaled.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    ring = p.add_mutually_exclusive_group()
    ring.add_argument("--ring", metavar="RING", help="move the device to this ring")
    ring.add_argument("--no-ring", action="store_true",
                      help="take the device out of every ring")
    sink_options(p, None)
    p.add_argument("--trust-root", type=Path, metavar="ROOT.json",
                   help="rotate to this trust root (the next version, signed by the current one)")
    p.add_argument("--providers", metavar="P1,P2",
                   help="ONNX Runtime execution providers the application uses, in order "
                   "(instead of each release's)")
    fallback = p.add_mutually_exclusive_group()
    fallback.add_argument("--provider-fallback", dest="fallback", action="store_true",
                          default=None,
                          help="a provider this device lacks is skipped (and reported)")
    fallback.add_argument("--no-provider-fallback", dest="fallback", action="store_false",
                          help="a provider this device lacks fails the check")
    p.add_argument("--graph-optimization-level", metavar="LEVEL",
                   help="ONNX Runtime graph optimisation: disable, basic, extended or all")
    p.add_argument("--execution-mode", metavar="MODE",
                   help="ONNX Runtime execution mode: sequential or parallel")
    p.add_argument("--intra-op-threads", type=int, metavar="N",
                   help="threads within an operator (0: ONNX Runtime's default)")
    p.add_argument("--inter-op-threads", type=int, metavar="N",
                   help="threads across operators (0: ONNX Runtime's default)")
    p.add_argument("--keep-releases", type=int, metavar="N",
                   help="releases kept besides current, previous and a hold's fallback after "
                        "each good install (default 3; older ones are collected as by gc --keep N)")
    p.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                   help="set a label model variants may select by (NAME= removes it); "
                   "repeatable")
    p.add_argument("--fact", action="append", default=[], metavar="NAME=VALUE",
                   help="state a fact the probe cannot see, e.g. cuda_capability=8.7 (it "
                   "wins over a probed one; NAME= removes it); repeatable")
    p.add_argument("--reset-runtime", action="store_true",
                   help="forget the providers, fallback and session options set here: each "
                   "release decides again")
    json_option(p)


@dataclass(frozen=True)
class Settings(Reported):
    """The device's settings after any change (``agent.configure.configure``)."""

    def text(self) -> str:
        d = self.data
        sink = d["sink"]
        options = ", ".join(f"{k}={v}" for k, v in sorted(sink.items()) if k != "type")
        lines = [f"changed   {c}" for c in d["changed"]]
        runtime = d.get("runtime") or {}
        session = ", ".join(f"{k}={v}" for k, v in (runtime.get("session") or {}).items())
        lines += [f"device    {d['device_id']}",
                  f"ring      {d['ring'] or '(none: only releases for every ring)'}",
                  f"sink      {sink.get('type', 'oci-dir')}" + (f" ({options})" if options else ""),
                  f"trust     root version {d['trust_version']}",
                  "providers " + (", ".join(runtime["providers"]) if runtime.get("providers")
                                  else "as each release says"),
                  "fallback  " + ("as each release says"
                                  if runtime.get("provider_fallback") is None
                                  else "allowed" if runtime["provider_fallback"]
                                  else "refused"),
                  "session   " + (session or "as each release says"),
                  f"keep      {d['keep_releases']} releases besides current and previous"]
        from agent.facts import facts_line

        lines.append(f"facts     {facts_line(d.get('facts'))}")
        return "\n".join(lines)


def run(args: argparse.Namespace) -> Settings:
    from agent.configure import KEEP, check_ring, configure, runtime_settings, sink_settings
    from agent.facts import parse_pairs
    from agent.journal import Journal
    from agent.operations import mutate
    from keys.trust import TrustRoot

    layout = layout_of(args)
    layout.require_initialised()
    ring: Any = KEEP
    if args.no_ring:
        ring = None
    elif args.ring is not None:
        ring = check_ring(args.ring)
    trust_root = None
    if args.trust_root is not None:
        data = read_input(args.trust_root, "trust root")
        TrustRoot.given(data, f"--trust-root {args.trust_root}")  # a root at all, before the lock
        trust_root = data
    session = {k: v for k, v in (("graph_optimization_level", args.graph_optimization_level),
                                 ("execution_mode", args.execution_mode),
                                 ("intra_op_threads", args.intra_op_threads),
                                 ("inter_op_threads", args.inter_op_threads)) if v is not None}
    providers = None if args.providers is None else [p.strip() for p in args.providers.split(",")]
    runtime_change = (args.reset_runtime or providers is not None or args.fallback is not None
                      or bool(session))
    if args.keep_releases is not None and args.keep_releases < 0:
        raise UsageError("--keep-releases must be 0 or more")
    labels = parse_pairs(args.label, "--label")
    stated = parse_pairs(args.fact, "--fact")
    changing = (ring is not KEEP or args.sink or args.sink_option or trust_root is not None
                or runtime_change or args.keep_releases is not None or bool(labels)
                or bool(stated))

    def work() -> dict[str, Any]:
        current = layout.load_config()
        sink = None
        if args.sink or args.sink_option:
            sink = sink_settings(args.sink or current.sink.get("type", "oci-dir"),
                                 args.sink_option, base=current.sink)
        runtime = None
        if runtime_change:
            runtime = runtime_settings(current.runtime, providers=providers,
                                       fallback=args.fallback, session=session,
                                       reset=args.reset_runtime)
        return configure(layout, Journal(layout.journal), ring=ring, sink=sink,
                         trust_root=trust_root, runtime=runtime, keep_releases=args.keep_releases,
                         labels=labels, stated=stated)

    if not changing:  # show only: no lock, so it answers while an install runs
        return Settings(configure(layout, Journal(layout.journal), sink=None, trust_root=None))
    return Settings(mutate(layout, work, notify=tell))
