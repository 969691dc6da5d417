"""Input drift: the population stability index (PSI) of recent inputs against a reference.

Both sides read the same sample files the same way: the bundler refuses a
reference sample the agent could not use, and the agent compares what the
application fed the model lately with the reference shipped in the bundle::

    ref = load_sample(Path("ref.npz"))                     # {"x": array of shape [n, 16]}
    now = load_sample(Path("samples/detector/0001.npz"))
    for name, score in feature_psi("x", ref["x"], now["x"]).items():
        print(name, round(score, 3))                      # x[0] 0.004, x[1] 0.31, ...

A sample file is an ``.npz`` whose keys are model input names and whose
arrays have one sample per row (axis 0). How an input becomes features:

* ``[n]``: one feature, the value itself;
* ``[n, f]``: one feature per column (``x[3]``);
* ``[n, c, ...]`` (three or more axes): one feature per index of axis 1, the
  mean of that slice of each sample (``x[c=0]``): per channel for NCHW images;
* more than ``MAX_DRIFT_FEATURES`` columns or channels: they are cut into that
  many contiguous groups and each group's mean is a feature (``x[0:12]``).

Binning: the reference's deciles (10 bins; equal quantiles merge, so a
feature with few distinct values gets fewer bins); a value equal to an edge
falls into the upper bin; non-finite values are left out. With proportions
``r`` (reference) and ``c`` (recent), each floored at ``1e-4`` so an empty bin
stays finite, ``PSI = sum((c - r) * ln(c / r))``: 0 for the same
distribution, about 0.1 for a small shift, above 0.2 for a shift worth a look.

Files are read without pickles and with every array's size checked against
``MAX_DRIFT_FILE_BYTES`` from its header before anything is allocated.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.errors import FormatError
from airlock.limits import MAX_DRIFT_FEATURES, MAX_DRIFT_FILE_BYTES

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BINS", "PROPORTION_FLOOR", "feature_psi", "features", "load_sample", "psi"]

#: Quantile bins of the reference.
BINS = 10
#: Smallest proportion a bin counts as, so an empty bin gives a large but finite PSI.
PROPORTION_FLOOR = 1e-4


def load_sample(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` sample file by name; FormatError for anything unusable."""
    import numpy as np
    from numpy.lib import format as npy

    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if i.filename.endswith(".npy")]
            if sum(i.file_size for i in members) > MAX_DRIFT_FILE_BYTES:
                raise FormatError(f"{path.name} holds more than {MAX_DRIFT_FILE_BYTES} bytes")
            for info in members:
                with z.open(info) as f:
                    version = npy.read_magic(f)
                    shape, _, dtype = (npy.read_array_header_1_0(f) if version == (1, 0)
                                       else npy.read_array_header_2_0(f))
                    # The header is checked before read_array allocates what it claims.
                    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
                    if dtype.hasobject or count * max(dtype.itemsize, 1) > info.file_size:
                        raise FormatError(f"{path.name}: array {info.filename[:-4]!r} "
                                          "is not plain numbers of its stated size")
                with z.open(info) as f:
                    arrays[info.filename[:-4]] = npy.read_array(f, allow_pickle=False)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise FormatError(f"{path.name} is not a readable .npz sample: {str(e)[:120]}") from None
    if not arrays:
        raise FormatError(f"{path.name} holds no arrays")
    return arrays


def features(name: str, array: Any) -> dict[str, np.ndarray]:
    """The features of one input (see the module docstring), each a float64 column."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 0 or a.dtype.kind not in "biuf":
        raise FormatError(f"input {name!r} must be numbers with one sample per row, "
                          f"got dtype {a.dtype} and shape {list(a.shape)}")
    a = a.astype(np.float64)
    if a.ndim == 1:
        return {name: a}
    if a.ndim == 2:
        columns, label = a, "{}"
    else:
        with np.errstate(invalid="ignore"):
            columns = a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2)
        label = "c={}"
    width = columns.shape[1]
    if width <= MAX_DRIFT_FEATURES:
        return {f"{name}[{label.format(j)}]": columns[:, j] for j in range(width)}
    out: dict[str, np.ndarray] = {}
    for group in np.array_split(np.arange(width), MAX_DRIFT_FEATURES):
        span = f"{group[0]}:{group[-1] + 1}"
        out[f"{name}[{label.format(span)}]"] = columns[:, group].mean(axis=1)
    return out


def psi(reference: Any, recent: Any, bins: int = BINS) -> float | None:
    """PSI of ``recent`` against ``reference`` (1-D); None when either has no finite value."""
    import numpy as np

    ref = np.asarray(reference, np.float64)
    cur = np.asarray(recent, np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    nbins = edges.size + 1
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=nbins) / ref.size
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=nbins) / cur.size
    r, c = np.maximum(r, PROPORTION_FLOOR), np.maximum(c, PROPORTION_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def feature_psi(name: str, reference: Any, recent: Any) -> dict[str, float]:
    """PSI per feature of input ``name``; features without finite values are left out."""
    ref, cur = features(name, reference), features(name, recent)
    if ref.keys() != cur.keys():
        raise FormatError(f"input {name!r} has another shape in the samples than in the reference")
    scores = {k: psi(ref[k], cur[k]) for k in ref}
    return {k: v for k, v in scores.items() if v is not None}
