"""Input contracts on the device: the samples an application drops, counted against the contract.

The application (or an operator) drops recent model inputs as ``.npz``
files, keyed by input name, one row per sample, into the folder the drift
check of the observe issue reads too; a half-written file must never be
seen, so it is written under a hidden name and renamed::

    ROOT/samples/<model>/batch-0042.npz

    np.savez(tmp := folder / ".batch-0042.npz.tmp", x=batch)
    os.replace(tmp, folder / "batch-0042.npz")

Then, for every model of a release that declares ``inputs_contract``::

    counts = sample_violations(layout, release)        # status, check
    watch = ContractWatch(layout); watch.update()       # serve: recounted when files change
    counts["classifier"]  # {"files": 3, "rows": 960, "violations": {"x": {"max": 12}},
                          #  "total": 12, "first": ["input 'x': 12 value(s) > max 10 (first: ...)"],
                          #  "unreadable": []}

Violations are counted, not acted on: bad inputs are the application's
data, not the release's fault, and ``status`` and ``check`` show them.
The newest ``MAX_DRIFT_SAMPLE_FILES`` files are read (the ones drift reads,
``agent.observe.sample_drift.sample_files``), each at most ``MAX_DRIFT_FILE_BYTES``,
streamed (``airlock.quality.npz_batches``); links, hidden and other non-``.npz``
names are skipped, and a file that cannot be read is listed, never an
error.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from agent.layout import Layout
from agent.observe.sample_drift import Fingerprint, fingerprint, sample_files
from agent.switch import read_link
from airlock.errors import AirlockError
from airlock.limits import MAX_DRIFT_FILE_BYTES, MAX_EVAL_BATCH_BYTES
from airlock.quality.contract import ContractCheck

if TYPE_CHECKING:
    # Annotations only: keys.release (~30 ms) is not for ``status`` to pay
    # (tests/test_startup.py).
    from keys.release import ModelEntry, Release

__all__ = ["ContractWatch", "model_violations", "sample_violations"]

_ROWS = 4096  # rows per read; memory stays one such batch
_SHOWN = 5  # violations and unreadable files listed by name


def model_violations(layout: Layout, model: ModelEntry) -> dict[str, Any]:
    """The contract violations in ``model``'s dropped samples (see the module docstring)."""
    check = ContractCheck(model.contract, stacked=True)  # each file stacks samples on axis 0
    files, rows = sample_files(layout.samples / model.name), 0
    unreadable: list[str] = []
    if files:  # numpy (~0.1 s to import) only when there are samples: status stays quick
        from airlock.quality.npz_batches import NpzRows, NpzRowsError
    for entry in files:
        try:
            size = entry.stat(follow_symlinks=False).st_size
            if size > MAX_DRIFT_FILE_BYTES:
                unreadable.append(f"{entry.name}: {size} bytes, more than "
                                  f"{MAX_DRIFT_FILE_BYTES} are read")
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f, NpzRows(f) as npz:
                check.shapes({n: (a.dtype, a.shape) for n, a in npz.arrays.items()})
                names = [r.name for r in model.contract if r.name in npz.arrays]
                for start, batch in npz.batches(_ROWS, names=names,
                                                max_batch_bytes=MAX_EVAL_BATCH_BYTES):
                    check.rows(batch, start, source=entry.name)
                rows += npz.count
        except (OSError, NpzRowsError) as e:
            unreadable.append(f"{entry.name}: {e}")
    return {"folder": layout.rel(layout.samples / model.name), "files": len(files), "rows": rows,
            "violations": check.counts(), "total": sum(v.count for v in check.violations),
            "first": [v.describe() for v in check.violations[:_SHOWN]],
            "unreadable": unreadable[:_SHOWN]}


def sample_violations(layout: Layout, release: Release | None) -> dict[str, dict[str, Any]]:
    """Per model with a contract, what its dropped samples break; {} without a release."""
    if release is None:
        return {}
    return {m.name: model_violations(layout, m) for m in release.models if m.contract}


class ContractWatch:
    """``sample_violations`` of the active release for ``serve`` (its ``/metrics``): counted
    again only when the release or a model's sample files change (``agent.observe.sample_drift.fingerprint``)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._cache: dict[tuple[str, str], tuple[Fingerprint, dict[str, Any]]] = {}
        self.last: dict[str, Any] = {"release": None, "models": {}}

    def update(self) -> dict[str, Any]:
        rid = read_link(self.layout, "current")
        release = None
        if rid is not None:
            with contextlib.suppress(AirlockError):  # status says what is wrong with it
                release = self.layout.load_release(rid)
        if rid is None or release is None:
            self._cache.clear()
            self.last = {"release": rid, "models": {}}
            return self.last
        cache, models = {}, {}
        for m in release.models:
            if not m.contract:
                continue
            key, fp = (rid, m.name), fingerprint(self.layout, m.name)
            hit = self._cache.get(key)
            if hit is None or hit[0] != fp:
                hit = (fp, model_violations(self.layout, m))
            cache[key] = hit
            models[m.name] = hit[1]
        self._cache = cache
        self.last = {"release": rid, "models": models}
        return self.last
