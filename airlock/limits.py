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
    "AGENT_VENV_TIMEOUT_S",
    "CHUNK",
    "MAX_CHILD_OUTPUT_BYTES",
    "MAX_CONFIG_PROBE_BYTES",
    "MAX_DEVICE_DOCUMENT_BYTES",
    "MAX_EXTENDED_HEADER_BYTES",
    "MAX_HEALTH_RUNS",
    "MAX_JSON_DEPTH",
    "MAX_KIT_FILES",
    "MAX_KIT_METADATA_BYTES",
    "MAX_LAYOUT_DOC_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_SEQUENCE",
    "RESERVE_BYTES",
    "SELF_CHECK_TIMEOUT_S",
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

#: An agent kit's signed list (``kit.json``) is read whole before its
#: signature is checked, by the agent and by the standard-library verifier a
#: kit carries (``keys/kitverify.py`` keeps a copy of this number). Endless
#: data; a kit's list of a few dozen wheels is a few kilobytes.
MAX_KIT_METADATA_BYTES: Final = 1024 * 1024

#: Files in an agent kit. Endless data of another shape: a kit is its wheels
#: (about twenty), an installer, a README and a requirements file.
MAX_KIT_FILES: Final = 1000

#: Wall-clock limit of each command of a new agent's self-check (``--version``,
#: ``fsck --read-only``, ``status``) and of its first start. A new agent that
#: hangs cannot hold the device's lock for ever; it fails its check instead.
SELF_CHECK_TIMEOUT_S: Final = 300.0

#: Installing a kit's wheels into a new agent's venv (pip, offline). Generous:
#: a small board unpacks and byte-compiles numpy and onnxruntime slowly.
AGENT_VENV_TIMEOUT_S: Final = 1800.0
