"""The post-switch hook and the probe: does the switched release actually serve?

Both come from the signed release (``hooks.post_switch``, ``hooks.probe``,
``hooks.probe_window_s``), so they run with the authority of the release
signer, through the shell, in the release directory, with::

    AIRLOCK_ROOT, AIRLOCK_RELEASE (id), AIRLOCK_RELEASE_DIR, AIRLOCK_VERSION

The probe is an ``http(s)://`` URL that must answer 2xx/3xx, or a command that
must exit 0; it is polled until it succeeds or ``probe_window_s`` passes::

    result = run_post_switch(layout, release)       # HookResult(ok, reason, seconds)
    if result.ok:
        result = run_probe(layout, release)
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from agent.layout import Layout
from keys.release import Release

__all__ = ["HookResult", "run_post_switch", "run_probe"]

_POLL_S = 0.25


@dataclass(frozen=True)
class HookResult:
    ok: bool
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(layout: Layout, release: Release) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRLOCK_ROOT": str(layout.root),
        "AIRLOCK_RELEASE": release.id,
        "AIRLOCK_RELEASE_DIR": str(layout.release_dir(release.id)),
        "AIRLOCK_VERSION": release.version,
    })
    return env


def _shell(cmd: str, layout: Layout, release: Release, timeout: float) -> tuple[bool, str]:
    try:
        p = subprocess.run(cmd, shell=True, cwd=layout.release_dir(release.id),
                           env=_env(layout, release), capture_output=True, text=True,
                           timeout=max(timeout, 0.1), check=False)
    except subprocess.TimeoutExpired:
        return False, f"'{cmd}' did not finish within {timeout:.0f} s"
    except OSError as e:
        return False, f"cannot run '{cmd}': {e.strerror}"
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return False, f"'{cmd}' exited {p.returncode}" + (f": {tail[-1][:200]}" if tail else "")
    return True, "ok"


def run_post_switch(layout: Layout, release: Release) -> HookResult:
    start = time.monotonic()
    cmd = release.hooks.post_switch
    if not cmd:
        return HookResult(True, "no post_switch hook", 0.0)
    ok, reason = _shell(cmd, layout, release, release.hooks.probe_window_s)
    return HookResult(ok, reason, round(time.monotonic() - start, 3))


def _http_once(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=max(timeout, 0.1)) as resp:
            code = int(resp.status)
    except urllib.error.HTTPError as e:
        code = e.code
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return False, f"{url}: {reason}"
    if 200 <= code < 400:
        return True, f"{url}: HTTP {code}"
    return False, f"{url}: HTTP {code}"


def run_probe(layout: Layout, release: Release) -> HookResult:
    """Poll the probe until it succeeds or the window closes."""
    probe = release.hooks.probe
    start = time.monotonic()
    if not probe:
        return HookResult(True, "no probe", 0.0)
    deadline = start + release.hooks.probe_window_s
    is_url = probe.startswith(("http://", "https://"))
    reason = "not run"
    while True:
        remaining = deadline - time.monotonic()
        if is_url:
            ok, reason = _http_once(probe, min(2.0, remaining))
        else:
            ok, reason = _shell(probe, layout, release, remaining)
        if ok:
            return HookResult(True, reason, round(time.monotonic() - start, 3))
        if time.monotonic() + _POLL_S >= deadline:
            window = release.hooks.probe_window_s
            return HookResult(False, f"probe failed for {window:g} s: {reason}",
                              round(time.monotonic() - start, 3))
        time.sleep(_POLL_S)
