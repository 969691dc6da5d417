"""The shadow comparison itself: two loaded models, the device's own samples, one verdict's facts.

Loaded by the health child (``_health_child.py``) by absolute path, like
``evaluation.py``: it imports only the standard library and numpy, and takes
ONNX Runtime sessions as plain objects with ``run``/``get_inputs``/``get_outputs``::

    facts = compare(candidate, running, ["/R/samples/clf/b-2.npz", "/R/samples/clf/b-1.npz"],
                    samples=500, compare_mode="auto", atol=1e-3, rtol=1e-2,
                    dtypes={"x": np.float32}, max_file_bytes=64 << 20, max_named=20)
    facts["agreement"], facts["latency_ratio"], facts["disagreements"][0]["sample"]

Files are read newest first (the caller's order), rows in order, until
``samples`` rows are taken; a sample is named ``FILE[ROW]``. Each row runs
once through the running model and once through the candidate, one after
the other (so both see the same machine load), each timed; the first row runs
once more untimed as a warm-up. Agreement is per row: ``argmax`` compares the
index of the largest value of the first output; ``close`` needs every value
within ``atol + rtol * |running|``. The disagreements are ranked by how far
apart the two outputs are (argmax: how much of the running model's class the
candidate dropped; close: the largest excess over the tolerance). Judging
(thresholds, wording) is the parent's (``airlock.quality.shadow_check``).
"""

from __future__ import annotations

import os
import time
import zipfile
from typing import Any

__all__ = ["ShadowDataError", "compare"]


class ShadowDataError(Exception):
    """The models or samples cannot be compared (an output the running model lacks...)."""


def compare(candidate: Any, running: Any, files: list[str], *, samples: int, compare_mode: str,
            atol: float, rtol: float, dtypes: dict[str, Any], max_file_bytes: int,
            max_named: int, outputs_to: str | None = None) -> dict[str, Any]:
    """The facts of one shadow comparison (see the module docstring); ``outputs_to``: also
    write every sample's name and both models' outputs there (``numpy.savez``)."""
    import numpy as np

    start = time.perf_counter()
    inputs = [i.name for i in candidate.get_inputs()]
    output = candidate.get_outputs()[0].name
    if output not in {o.name for o in running.get_outputs()}:
        raise ShadowDataError(f"the running model has no output {output!r} to compare with")
    if sorted(i.name for i in running.get_inputs()) != sorted(inputs):
        raise ShadowDataError("the running model takes other inputs than the candidate")
    rows, skipped, used = _rows(files, inputs, dtypes, samples, max_file_bytes)
    out: dict[str, Any] = {"output": output, "asked": samples, "samples": len(rows),
                           "files": used, "skipped": skipped[:3], "agreement": None,
                           "latency_ratio": None, "disagreements": []}
    if not rows:
        out["seconds"] = round(time.perf_counter() - start, 4)
        return out
    _run(running, output, rows[0][1])  # warm-up, untimed
    _run(candidate, output, rows[0][1])
    t_run, t_cand, worst = [], [], []
    kept: list[tuple[Any, Any]] = []
    agree = 0
    mode = compare_mode
    for name, feed in rows:
        t0 = time.perf_counter()
        r = _run(running, output, feed)
        t1 = time.perf_counter()
        c = _run(candidate, output, feed)
        t_cand.append(time.perf_counter() - t1)
        t_run.append(t1 - t0)
        if r.shape != c.shape:
            raise ShadowDataError(f"output {output!r} has shape {list(c.shape)} in the candidate, "
                                  f"{list(r.shape)} in the running model")
        if outputs_to is not None:
            kept.append((r, c))
        if mode == "auto":
            mode = "argmax" if r.size > 1 else "close"
        ok, score, told = _agree(mode, r.astype(np.float64).ravel(),
                                 c.astype(np.float64).ravel(), atol, rtol)
        if ok:
            agree += 1
        else:
            worst.append({"sample": name, "score": score, **told})
    worst.sort(key=lambda d: -d["score"])
    if outputs_to is not None:
        np.savez(outputs_to, sample=np.array([n for n, _ in rows]),
                 running=np.concatenate([r for r, _ in kept]),
                 candidate=np.concatenate([c for _, c in kept]))
    p95_run = float(np.percentile(t_run, 95)) * 1000
    p95_cand = float(np.percentile(t_cand, 95)) * 1000
    out.update(compare=mode, agreement=agree / len(rows), agreed=agree,
               running_p95_ms=round(p95_run, 4), candidate_p95_ms=round(p95_cand, 4),
               latency_ratio=round(p95_cand / p95_run, 4) if p95_run > 0 else None,
               disagreements=worst[:max_named], disagreed=len(worst),
               seconds=round(time.perf_counter() - start, 4))
    return out


def _run(session: Any, output: str, feed: dict[str, Any]) -> Any:
    import numpy as np

    try:
        (y,) = session.run([output], feed)
    except Exception as e:
        text = (str(e).strip() or type(e).__name__).splitlines()[0][:300]
        raise ShadowDataError(f"inference failed on a device sample: {text}") from e
    return np.asarray(y)


def _agree(mode: str, r: Any, c: Any, atol: float, rtol: float) -> tuple[bool, float, dict[str, Any]]:
    """(agree, how far apart, what each model said) for one sample."""
    import numpy as np

    if mode == "argmax":
        rk, ck = int(np.argmax(r)), int(np.argmax(c))
        return rk == ck, float(r[rk] - c[rk]), {"running": rk, "candidate": ck}
    with np.errstate(invalid="ignore", over="ignore"):
        excess = np.abs(c - r) - (atol + rtol * np.abs(r))
        excess = np.where(np.isnan(excess), np.inf, excess)
    i = int(np.argmax(excess))
    score = float(excess[i])
    return bool(score <= 0), score if np.isfinite(score) else 1e300, {
        "running": _num(r[i]), "candidate": _num(c[i])}


def _num(x: Any) -> float | str:
    v = float(x)
    return v if v == v and abs(v) != float("inf") else str(v)


def _rows(files: list[str], inputs: list[str], dtypes: dict[str, Any], samples: int,
          max_file_bytes: int) -> tuple[list[tuple[str, dict[str, Any]]], list[str], int]:
    """Up to ``samples`` named rows (one feed each) from the newest files; what was skipped."""
    import numpy as np

    rows: list[tuple[str, dict[str, Any]]] = []
    skipped: list[str] = []
    used = 0
    for path in files:
        if len(rows) >= samples:
            break
        name = os.path.basename(path)
        try:
            arrays = _load(path, max_file_bytes)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            skipped.append(f"{name}: {str(e)[:120]}")
            continue
        missing = sorted(set(inputs) - set(arrays))
        if missing or any(arrays[k].ndim == 0 for k in inputs):
            skipped.append(f"{name}: lacks input(s) {missing}" if missing
                           else f"{name}: holds scalars, not rows")
            continue
        used += 1
        count = min(len(arrays[k]) for k in inputs)
        for i in range(min(count, samples - len(rows))):
            rows.append((f"{name}[{i}]", {
                k: np.ascontiguousarray(arrays[k][i:i + 1], dtype=dtypes.get(k))
                for k in inputs}))
    return rows, skipped, used


def _load(path: str, max_file_bytes: int) -> dict[str, Any]:
    """The arrays of one ``.npz``, refused before loading when it would unpack too large."""
    import numpy as np

    with zipfile.ZipFile(path) as z:
        if sum(i.file_size for i in z.infolist()) > max_file_bytes:
            raise ValueError(f"unpacks to more than {max_file_bytes} bytes")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
