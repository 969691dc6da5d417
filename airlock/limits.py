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
    "MAX_EXTENDED_HEADER_BYTES",
    "MAX_HEALTH_RUNS",
    "MAX_JSON_DEPTH",
    "MAX_LAYOUT_DOC_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_PARTS",
    "MAX_PARTS_MANIFEST_BYTES",
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

#: Parts of one split bundle. Three-digit names (``part001`` … ``part999``)
#: keep ``cat BUNDLE.part*`` in order; 999 parts of 4000 MiB hold 3.9 TB. Also
#: bounds the file handles and stats a hostile ``parts.json`` can ask for.
MAX_PARTS: Final = 999

#: ``BUNDLE.parts.json`` is unsigned (anyone holding the stick can edit it) and
#: read whole before any part: endless data. 999 entries need about 150 KB.
MAX_PARTS_MANIFEST_BYTES: Final = 1024 * 1024
