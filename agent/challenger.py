"""The shadow check's inputs on a device: the running release's model and the newest samples.

A model whose signed spec carries ``shadow:`` is compared before the switch
with the model of the same name in the running release, on the newest
samples the application dropped in ``ROOT/samples/MODEL/`` (the drift
folder; ``agent.observe.sample_drift``)::

    asks = shadow_asks(layout, candidate_release, running="vision-5")
    asks["classifier"].files[:2]     # newest sample files first
    check_release(rdir, release, shadows=asks)

A model with no running counterpart (new in this release, or nothing runs
yet) has no ask: there is nothing to compare with, and the result says so.
"""

from __future__ import annotations

from pathlib import Path

from agent.layout import Layout
from agent.observe.sample_drift import sample_files
from airlock.errors import AirlockError
from airlock.limits import MAX_SHADOW_SAMPLES
from airlock.quality.shadow_check import ShadowAsk
from keys.release import Release

__all__ = ["shadow_asks"]


def shadow_asks(layout: Layout, release: Release, *, running: str | None
                ) -> tuple[dict[str, ShadowAsk], list[str]]:
    """Per model with ``shadow:``, what to compare it with; and why some cannot be compared."""
    asks: dict[str, ShadowAsk] = {}
    unmatched: list[str] = []
    wanted = [m for m in release.models if m.shadow is not None]
    if not wanted:
        return asks, unmatched
    old = None
    if running is not None and running != release.id:
        try:
            old = layout.load_release(running)
        except AirlockError:
            old = None
    by_name = {m.name: m for m in old.models} if old is not None else {}
    for m in wanted:
        assert m.shadow is not None
        theirs = by_name.get(m.name)
        if theirs is None or old is None:
            unmatched.append(f"model '{m.name}': no running model to shadow "
                             f"({'nothing runs yet' if old is None else f'{old.id} has none'})")
            continue
        folder = layout.samples / m.name
        # One row per file at worst: as many files as samples asked, newest first.
        files = sample_files(folder, limit=min(m.shadow.samples, MAX_SHADOW_SAMPLES))
        asks[m.name] = ShadowAsk(
            m.shadow, layout.release_dir(old.id) / "models" / m.name / theirs.file_name,
            old.id, tuple(Path(e.path) for e in files), str(folder))
    return asks, unmatched
