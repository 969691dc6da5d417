"""The post-switch hook and the probe: does the switched release actually serve?

Both come from the signed release (``hooks.post_switch``, ``hooks.probe``,
``hooks.probe_window_s``), so they run with the authority of the release
signer, through ``/bin/sh``, in the release directory, in their own process
group, with the allowlisted environment of :mod:`airlock.spawn` plus::

    AIRLOCK_ROOT, AIRLOCK_RELEASE (id), AIRLOCK_RELEASE_DIR, AIRLOCK_VERSION

The probe is an ``http(s)://`` URL that must answer 2xx/3xx, or a command that
must exit 0; it is polled until it succeeds or ``probe_window_s`` passes::

    result = run_post_switch(layout, release)       # HookResult(ok, reason, seconds, output_tail)
    if result.ok:
        result = run_probe(layout, release)

Containment: the hook gets ``probe_window_s`` to finish and a command probe
the rest of its window; one that overruns is killed with its whole process
group. A hook that exits is done even if it left a service running in the
background (``service &``), which keeps running. What they print is kept as
its last 64 KiB (``output_tail``; the reason carries the last line). An HTTP
probe attempt is a hard deadline for the whole request, connect to headers
(no proxy, redirects not followed: a 3xx is an answer), so a server that
drips its answer a byte at a time cannot hold the probe past its window.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from agent.layout import Layout
from airlock.limits import PROBE_ATTEMPT_S
from airlock.spawn import child_env, run_contained

if TYPE_CHECKING:
    import http.client

    from keys.release import Release

__all__ = ["HookResult", "run_post_switch", "run_probe"]

_POLL_S = 0.25


@dataclass(frozen=True)
class HookResult:
    ok: bool
    reason: str
    seconds: float
    output_tail: str = ""  # what the command printed last (bounded), for the journal

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(layout: Layout, release: Release) -> dict[str, str]:
    return child_env({
        "AIRLOCK_ROOT": str(layout.root),
        "AIRLOCK_RELEASE": release.id,
        "AIRLOCK_RELEASE_DIR": str(layout.release_dir(release.id)),
        "AIRLOCK_VERSION": release.version,
    })


def _shell(cmd: str, layout: Layout, release: Release,
           timeout: float) -> tuple[bool, str, str]:
    try:
        done = run_contained(cmd, cwd=layout.release_dir(release.id),
                             env=_env(layout, release), timeout_s=timeout, shell=True)
    except OSError as e:
        return False, f"cannot run '{cmd}': {e.strerror or e}", ""
    said = done.last_line()
    if done.timed_out:
        return (False, f"'{cmd}' did not finish within {max(timeout, 0.1):.3g} s (killed)"
                + (f": {said}" if said else ""), done.output_tail)
    if not done.ok:
        return (False, f"'{cmd}' exited {done.returncode}" + (f": {said}" if said else ""),
                done.output_tail)
    return True, "ok", done.output_tail


def run_post_switch(layout: Layout, release: Release) -> HookResult:
    start = time.monotonic()
    cmd = release.hooks.post_switch
    if not cmd:
        return HookResult(True, "no post_switch hook", 0.0)
    ok, reason, output = _shell(cmd, layout, release, release.hooks.probe_window_s)
    return HookResult(ok, reason, round(time.monotonic() - start, 3), output)


def _http_once(url: str, timeout: float) -> tuple[bool, str]:
    """One GET, status line and headers only, all of it within ``timeout`` seconds."""
    import http.client  # with ssl, 15 ms of every start for the few releases with an HTTP probe

    try:
        conn = _connection(url, timeout)
    except ValueError as e:
        return False, f"{url}: {e}"
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            conn.request("GET", target, headers={"Connection": "close",
                                                 "User-Agent": "airlock-agent probe"})
            answer["code"] = conn.getresponse().status
        except (OSError, http.client.HTTPException, ValueError) as e:
            answer["error"] = e
        finally:
            conn.close()

    # urllib's timeout is per socket read, so a slow drip never trips it.
    # The request runs in a thread and the deadline is the join's; past it the
    # socket is shut down, which ends a blocked read at once.
    asker = threading.Thread(target=ask, name="airlock-probe", daemon=True)
    asker.start()
    asker.join(timeout)
    # A socket read timing out at about the same instant as the join is the same
    # event: one message for both, whichever side of the race saw it first.
    if asker.is_alive() or isinstance(answer.get("error"), TimeoutError):
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return False, f"{url}: no answer within {timeout:.3g} s"
    if "error" in answer:
        err = answer["error"]
        return False, f"{url}: {getattr(err, 'reason', None) or err or type(err).__name__}"
    code = int(answer["code"])
    return 200 <= code < 400, f"{url}: HTTP {code}"


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    import http.client
    import ssl

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError("no host in the probe URL")
    port = parts.port  # raises ValueError on a bad port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(parts.hostname, port, timeout=timeout)


def run_probe(layout: Layout, release: Release) -> HookResult:
    """Poll the probe until it succeeds or the window closes."""
    probe = release.hooks.probe
    start = time.monotonic()
    if not probe:
        return HookResult(True, "no probe", 0.0)
    deadline = start + release.hooks.probe_window_s
    is_url = probe.startswith(("http://", "https://"))
    reason, output = "not run", ""
    while True:
        remaining = max(deadline - time.monotonic(), 0.1)
        if is_url:
            ok, reason = _http_once(probe, min(PROBE_ATTEMPT_S, remaining))
        else:
            ok, reason, output = _shell(probe, layout, release, remaining)
        if ok:
            return HookResult(True, reason, round(time.monotonic() - start, 3), output)
        if time.monotonic() + _POLL_S >= deadline:
            window = release.hooks.probe_window_s
            return HookResult(False, f"probe failed for {window:g} s: {reason}",
                              round(time.monotonic() - start, 3), output)
        time.sleep(_POLL_S)
