"""Every size, count and depth bound Airlock enforces, in one typed place.

Modelled on python-tuf's ``ngclient/config.py``: a bound is defined once,
here, with the threat it answers, and every reader and writer imports it
(the bundler refuses to build what a device would refuse)::

    from airlock.limits import MAX_METADATA_BYTES

    if len(release_json) > MAX_METADATA_BYTES:
        raise FormatError(...)

Bounds on what is read *before* a signature is checked matter most: there
the input comes from anyone who can hand a USB stick to a technician.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHUNK",
    "MAX_CHILD_OUTPUT_BYTES",
    "MAX_CONFIG_PROBE_BYTES",
    "MAX_DEVICE_DOCUMENT_BYTES",
    "MAX_DRIFT_FEATURES",
    "MAX_DRIFT_FILE_BYTES",
    "MAX_DRIFT_ROWS",
    "MAX_DRIFT_SAMPLE_FILES",
    "MAX_DROP_MEMORY",
    "MAX_EXTENDED_HEADER_BYTES",
    "MAX_HEALTH_RUNS",
    "MAX_JSON_DEPTH",
    "MAX_LAYOUT_DOC_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_REPORT_FIELD_CHARS",
    "MAX_REPORT_JOURNAL_ENTRIES",
    "MAX_SEQUENCE",
    "RESERVE_BYTES",
]

#: Read and write buffer for streaming blobs. Not a security bound: memory
#: stays flat at about one chunk per stream whatever the bundle size.
CHUNK: Final = 1024 * 1024

#: Signed metadata (``airlock/release.json``, ``airlock/root.json``) is read
#: whole before its signature is checked. Endless-data attack: without a bound
#: a hostile bundle makes the reader allocate without limit. 100k blobs fit in
#: about 20 MB.
MAX_METADATA_BYTES: Final = 32 * 1024 * 1024

#: ``index.json`` and image manifests are read whole to check what they
#: reference. Endless data again; real ones are kilobytes.
MAX_LAYOUT_DOC_BYTES: Final = 32 * 1024 * 1024

#: A pax or GNU long-name header is read whole by tarfile before the member it
#: describes. Endless data in an unsigned part of the tar; ours are a few
#: hundred bytes.
MAX_EXTENDED_HEADER_BYTES: Final = 1024 * 1024

#: The largest release sequence. Fast-forward attack: a signed release with a
#: huge sequence would lock a device out of every later release; beyond 2^53
#: JSON readers (jq, the fleet table) also lose precision.
MAX_SEQUENCE: Final = 2**53 - 1

#: Nesting of any JSON a release carries. Deep nesting is a recursion (stack)
#: attack on every reader, ours and the user's.
MAX_JSON_DEPTH: Final = 32

#: Timed inference runs of one health check. CPU exhaustion by a signed but
#: careless release; 100k runs of a small model is already minutes.
MAX_HEALTH_RUNS: Final = 100_000

#: Release, model, file and ring names: letters, digits, ``.``, ``_``, ``-``.
#: Names become file names on the device; a bound keeps them portable.
MAX_NAME_LENGTH: Final = 128

#: A single-platform image's config is fetched to check its platform; larger
#: configs are not real ones and are not read (registry-side endless data).
MAX_CONFIG_PROBE_BYTES: Final = 1024 * 1024

#: What the health-check child prints is read whole; a model that floods its
#: stdout cannot exhaust the agent's memory.
MAX_CHILD_OUTPUT_BYTES: Final = 4 * 1024 * 1024

#: Free space the agent keeps on top of what an install writes (default of
#: ``reserve_bytes`` in agent.yaml): a full disk must not stop the journal.
RESERVE_BYTES: Final = 16 * 1024 * 1024

#: A device's signed inventory or report is read whole on the host before its
#: signature is checked; a stick may carry anything. An inventory lists every
#: blob a device holds (about 100 bytes each), so this fits 100k blobs.
MAX_DEVICE_DOCUMENT_BYTES: Final = 16 * 1024 * 1024

#: Features one model input is summarised into for drift (columns or channels
#: beyond it are grouped). Label cardinality of the drift metric and CPU per
#: computation: an image input must not become 150k time series.
MAX_DRIFT_FEATURES: Final = 64

#: Bytes (uncompressed) one drift sample or reference ``.npz`` may hold; each
#: array's header is checked against it before the array is allocated. A
#: compression bomb or a header that lies about its shape in the samples folder
#: must not exhaust the long-running agent's memory.
MAX_DRIFT_FILE_BYTES: Final = 64 * 1024 * 1024

#: Newest sample files, and rows across them, one drift computation reads. A
#: folder the application fills without end must not make each computation
#: slower and larger than the last.
MAX_DRIFT_SAMPLE_FILES: Final = 64
MAX_DRIFT_ROWS: Final = 100_000

#: Journal entries one device report carries, and characters of any one text
#: field in them (the tail is kept: hook output ends with the error). Reports
#: travel home on a stick shared by many devices; a noisy device must not
#: fill it.
MAX_REPORT_JOURNAL_ENTRIES: Final = 500
MAX_REPORT_FIELD_CHARS: Final = 2048

#: Drop-folder outcomes ``serve`` remembers (by signed-metadata digest and by
#: file) so a bundle is installed once; the oldest are forgotten first. A
#: stick with thousands of files must not grow the state without bound.
MAX_DROP_MEMORY: Final = 1000
