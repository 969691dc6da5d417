"""A device's settings, checked when they are given and changed later: ring, image sink, trust
root, and the ONNX Runtime setup of its application (``agent.runtime``).

``airlock-agent init`` checks its sink settings here before it writes
anything, so ``--sink docker`` is a one-line usage error (exit 2) at the
desk rather than a failed first install at the site. ``airlock-agent
config`` changes them afterwards, under the agent's lock, journaled::

    check_sink(sink_settings("registry", ["registry=10.0.0.5:5000"]), layout.images)
    sink_unreachable({"type": "registry", "registry": "10.0.0.5:5000"})
    # "registry 10.0.0.5:5000 is not reachable now (connection refused); …" or None
    changed = configure(layout, journal, ring="prod", sink=None, trust_root=None)
    changed["changed"]   # ["ring: canary -> prod"]
    runtime = runtime_settings(config.runtime, providers=["OpenVINOExecutionProvider",
                               "CPUExecutionProvider"], fallback=False, session={}, reset=False)
    configure(layout, journal, sink=None, trust_root=None, runtime=runtime)

The trust root moves only forward: a new root is taken only as a rotation
the current root signs (``TrustRoot.rotate``: the threshold of the old and
the new root keys, the next version), exactly as a rotation carried in a
bundle would be. Settings are written to ``agent.yaml`` atomically.
"""

from __future__ import annotations

import difflib
import socket
from typing import Any

import yaml

from agent.journal import Journal
from agent.layout import AgentConfig, Layout
from agent.runtime import DeviceRuntime
from agent.sinks import SINK_TYPES, make_sink
from airlock.errors import UsageError
from airlock.files import write_atomic
from keys.signed_fields import FieldError, valid_name

__all__ = ["check_ring", "check_sink", "configure", "runtime_settings", "sink_settings",
           "sink_unreachable"]

#: ``ring`` argument of :func:`configure` that leaves the ring as it is.
KEEP = object()


def sink_settings(kind: str, options: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--sink TYPE`` and ``--sink-option KEY=VALUE`` as a sink config (``KEY=`` drops KEY)."""
    if kind not in SINK_TYPES:
        near = difflib.get_close_matches(kind, SINK_TYPES, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise UsageError(f"--sink {kind!r} is not an image sink type; {hint}"
                         f"use one of: {', '.join(SINK_TYPES)}")
    config: dict[str, Any] = dict(base or {}) if base and base.get("type") == kind else {}
    config["type"] = kind
    for opt in options:
        key, eq, value = opt.partition("=")
        if not eq or not key:
            raise UsageError(f"--sink-option {opt!r} must be KEY=VALUE")
        if key == "type":
            raise UsageError("--sink-option type=... is --sink TYPE")
        if value:
            config[key] = value
        else:
            config.pop(key, None)
    return config


def check_sink(config: dict[str, Any], images_dir: Any) -> None:
    """Refuse (UsageError, exit 2) a sink the agent could not build at install time."""
    make_sink(config, images_dir)


def sink_unreachable(config: dict[str, Any], timeout: float = 3.0) -> str | None:
    """Why a ``registry`` sink cannot be reached now, or None (reached, or not a registry).

    A warning, not a refusal: a device is often set up at the desk, away from the
    site network its registry lives on. A TCP connection is the whole test; the
    credentials and the API are the first install's business.
    """
    registry = config.get("registry")
    if config.get("type") != "registry" or not isinstance(registry, str):
        return None
    host, port = _host_port(registry)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or ("timed out" if isinstance(e, TimeoutError) else type(e).__name__)
        return (f"registry {registry} is not reachable now ({why.lower()}); the sink is set, "
                "and each install pushes its images there: it fails (exit 4, the previous "
                "release stays) until the registry answers")
    return None


def _host_port(registry: str) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[V6]:PORT``; without a port, HTTPS's 443 (as a registry client)."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 443
    host, _, port = registry.partition(":")
    return host, int(port) if port.isdigit() else 443


def check_ring(ring: str) -> str:
    try:
        return valid_name(ring)
    except FieldError as e:
        raise UsageError(f"--ring {ring!r}: {e}") from None


def runtime_settings(base: DeviceRuntime, *, providers: list[str] | None, fallback: bool | None,
                     session: dict[str, Any], reset: bool) -> DeviceRuntime:
    """``--providers``, ``--[no-]provider-fallback`` and session options over ``base`` (or over
    nothing with ``reset``), held to the release's own rules: UsageError (exit 2) naming the rule."""
    raw = {} if reset else base.to_dict()
    if providers is not None:
        raw["providers"] = providers
    if fallback is not None:
        raw["provider_fallback"] = fallback
    raw["session"] = {**raw.get("session", {}), **session}
    return DeviceRuntime.from_config(raw, "airlock-agent config")


def configure(layout: Layout, journal: Journal, *, ring: Any = KEEP, sink: dict[str, Any] | None,
              trust_root: bytes | None, runtime: DeviceRuntime | None = None,
              keep_releases: int | None = None, labels: dict[str, str] | None = None,
              stated: dict[str, str] | None = None) -> dict[str, Any]:
    """Apply what is given (``ring=None`` leaves no ring, ``runtime=None`` the runtime as it is);
    report the settings and what changed."""
    config = layout.load_config()
    changed: list[str] = []
    new_ring = config.ring if ring is KEEP else ring
    if new_ring != config.ring:
        changed.append(f"ring: {config.ring or '(none)'} -> {new_ring or '(none)'}")
    new_sink = config.sink if sink is None else sink
    if new_sink != config.sink:
        check_sink(new_sink, layout.images)
        changed.append(f"sink: {_sink_text(config.sink)} -> {_sink_text(new_sink)}")
    trust = layout.load_trust()
    new_trust = trust
    if trust_root is not None:
        new_trust = trust.rotate(trust_root)
        if new_trust is not trust:
            changed.append(f"trust root: version {trust.version} -> {new_trust.version}")
    if new_trust is not trust:
        write_atomic(layout.trust_root, new_trust.to_bytes())
        journal.append("trust-rotated", version=new_trust.version)
    new_runtime = config.runtime if runtime is None else runtime
    if new_runtime != config.runtime:
        changed.append(f"runtime: {_runtime_text(config.runtime)} -> "
                       f"{_runtime_text(new_runtime)}")
    new_keep = config.keep_releases if keep_releases is None else keep_releases
    if new_keep != config.keep_releases:
        changed.append(f"keep releases: {config.keep_releases} -> {new_keep}")
    new_labels = _pairs(config.labels, labels or {}, "label", changed)
    new_facts = _pairs(config.facts, stated or {}, "fact", changed)
    updated = AgentConfig(config.device_id, new_ring, new_sink, config.reserve_bytes, new_runtime,
                          new_keep, new_labels, new_facts)
    if updated != config:
        write_atomic(layout.config, yaml.safe_dump(updated.to_dict(), sort_keys=True).encode())
        journal.append("configured", ring=updated.ring, sink=updated.sink.get("type"),
                       runtime=updated.runtime.to_dict() or None, changed=changed)
    from agent.facts import load_facts, refresh

    facts = load_facts(layout)
    if updated.labels != config.labels or updated.facts != config.facts:
        facts = refresh(layout, updated.labels, updated.facts)
    out = {"root": str(layout.root), "device_id": updated.device_id, "ring": updated.ring,
           "sink": updated.sink, "trust_version": new_trust.version,
           "keep_releases": updated.keep_releases, "changed": changed, "facts": facts}
    if not updated.runtime.is_empty():
        out["runtime"] = updated.runtime.to_dict()
    return out


def _pairs(old: dict[str, str], given: dict[str, str], what: str,
           changed: list[str]) -> dict[str, str]:
    """``old`` with ``given`` applied (an empty value removes the name); each change said."""
    new = dict(old)
    for key, value in given.items():
        if value and new.get(key) != value:
            changed.append(f"{what} {key}: {new.get(key, '(none)')} -> {value}")
            new[key] = value
        elif not value and key in new:
            changed.append(f"{what} {key}: {new.pop(key)} -> (none)")
    return dict(sorted(new.items()))


def _runtime_text(runtime: DeviceRuntime) -> str:
    if runtime.is_empty():
        return "as each release says"
    d = runtime.to_dict()
    parts = [", ".join(d["providers"])] if "providers" in d else []
    if "provider_fallback" in d:
        parts.append("fallback " + ("allowed" if d["provider_fallback"] else "refused"))
    parts += [f"{k}={v}" for k, v in (d.get("session") or {}).items()]
    return "; ".join(parts)


def _sink_text(sink: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(sink.items()) if k != "type")
    return f"{sink.get('type', 'oci-dir')}" + (f" ({options})" if options else "")
