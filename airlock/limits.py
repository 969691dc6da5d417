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
    "HASH_JOBS_IN_FLIGHT",
    "HASH_THREADS",
    "HTTP_IDLE_TIMEOUT_S",
    "HTTP_PULL_RESUMES",
    "HTTP_PULL_RETRY_S",
    "HTTP_PULL_TIMEOUT_S",
    "HTTP_REQUEST_TIMEOUT_S",
    "KEEP_RELEASES",
    "MAX_CHILD_OUTPUT_BYTES",
    "MAX_CONFIG_PROBE_BYTES",
    "MAX_CONTRACT_VALUES",
    "MAX_DETACHED_SIGNATURE_BYTES",
    "MAX_DETAILED_CLASSES",
    "MAX_DEVICE_DOCUMENT_BYTES",
    "MAX_DRIFT_FEATURES",
    "MAX_DRIFT_FILE_BYTES",
    "MAX_DRIFT_ROWS",
    "MAX_DRIFT_SAMPLE_FILES",
    "MAX_DROPS_PER_SCAN",
    "MAX_DROP_MEMORY",
    "MAX_DROP_SCAN_ENTRIES",
    "MAX_EVAL_BATCH",
    "MAX_EVAL_BATCH_BYTES",
    "MAX_EVAL_CLASSES",
    "MAX_EVAL_METRICS",
    "MAX_EVAL_SAMPLES",
    "MAX_EVIDENCE_BLOB_BYTES",
    "MAX_EXTENDED_HEADERS_PER_MEMBER",
    "MAX_EXTENDED_HEADER_BYTES",
    "MAX_EXTENDED_HEADER_TOTAL_BYTES",
    "MAX_HEALTH_RUNS",
    "MAX_HTTP_CONNECTIONS",
    "MAX_HTTP_HANDLERS",
    "MAX_JOURNAL_SEGMENTS",
    "MAX_JOURNAL_SEGMENT_BYTES",
    "MAX_JOURNAL_TEXT_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER",
    "MAX_KIT_FILES",
    "MAX_KIT_METADATA_BYTES",
    "MAX_LAYOUT_DOC_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_VALUES",
    "MAX_NAME_LENGTH",
    "MAX_OPERATOR_ROLLBACKS",
    "MAX_OUTPUT_SPOOL_BYTES",
    "MAX_OUTPUT_TAIL_BYTES",
    "MAX_PACKAGE_DB_BYTES",
    "MAX_PARTS",
    "MAX_PARTS_MANIFEST_BYTES",
    "MAX_PROFILE_BYTES",
    "MAX_RELAY_HANDLERS",
    "MAX_REPORT_CLOCK_SKEW_S",
    "MAX_REPORT_FIELD_CHARS",
    "MAX_REPORT_JOURNAL_ENTRIES",
    "MAX_SEQUENCE",
    "MAX_SERVE_LOG_BYTES",
    "MAX_SERVE_LOG_FILES",
    "MAX_SHADOW_DISAGREEMENTS",
    "MAX_SHADOW_SAMPLES",
    "MAX_SPEC_ALIAS_EXPANSION",
    "MAX_STATE_FILE_BYTES",
    "MAX_THREADS",
    "MAX_TOP_K",
    "PIPELINE_BUFFERS",
    "PIPELINE_MIN_BYTES",
    "PROBE_ATTEMPT_S",
    "RACY_STAMP_NS",
    "RESERVE_BYTES",
    "SELF_CHECK_TIMEOUT_S",
    "WRITEBACK_BYTES",
]

#: Read and write buffer for streaming blobs. Not a security bound: memory
#: stays flat at about one chunk per stream whatever the bundle size.
CHUNK: Final = 1024 * 1024

#: A file stamp (``airlock.format.writer.FileStamp``) whose mtime is this close to
#: the time it was taken is not trusted: a write in the same clock tick
#: (jiffies, or 2 s on FAT) would leave the mtime as it was. 2 s covers both.
RACY_STAMP_NS: Final = 2 * 1_000_000_000
#: Threads that hash (and write) independent blobs of a bundle file at once:
#: hashlib releases the GIL, so each is a core; two cores is the machine we
#: measure on. Not a security bound: each holds ``PIPELINE_BUFFERS`` chunks.
HASH_THREADS: Final = 2
#: Blobs handed to those threads and not yet settled, in archive order: the
#: reader waits for the oldest beyond this, so the work queued stays bounded
#: whatever the number of blobs.
HASH_JOBS_IN_FLIGHT: Final = 8
#: Chunks one stream has in flight between its reader and its hashing thread.
#: Memory: ``HASH_THREADS * PIPELINE_BUFFERS * CHUNK`` (8 MiB), flat for any size.
PIPELINE_BUFFERS: Final = 4
#: A blob being installed is flushed to disk on a thread of its own each time
#: this much more has been written, so its final fsync (before it enters the
#: store) waits only for the tail instead of the whole blob.
WRITEBACK_BYTES: Final = 64 * 1024 * 1024
#: A blob smaller than this is hashed by the thread that reads it: starting a
#: hashing thread costs more than it saves.
PIPELINE_MIN_BYTES: Final = 4 * 1024 * 1024

#: Signed metadata (``airlock/release.json``, ``airlock/root.json``) is read
#: whole and parsed before its signature is checked. Endless-data and memory
#: attack: a 32 MiB release of empty lists made the agent peak at 872 MiB.
#: A listed blob costs about 190 bytes (its ``targets`` entry) plus 75 when an
#: image lists it too, so 4 MiB holds some 15,000 blobs; our demo release is
#: 2 KiB. The bundler refuses to sign more.
MAX_METADATA_BYTES: Final = 4 * 1024 * 1024

#: JSON values in signed metadata, counted before it is parsed as the number
#: of ``[``, ``{``, ``,`` and ``:`` bytes (an upper bound: each value but the
#: first follows one of them). Memory attack by shape: tiny values (``[]`` is
#: 56 bytes as a Python list) would turn 4 MiB into ~100 MiB of objects. A
#: listed blob costs about 10; 200,000 allows ~20,000 blobs, and the agent
#: peaks at 64 MiB (38 MiB idle) on the heaviest metadata within both bounds.
MAX_METADATA_VALUES: Final = 200_000

#: ``index.json`` and image manifests are read whole to check what they
#: reference. Endless data again; real ones are kilobytes.
MAX_LAYOUT_DOC_BYTES: Final = 32 * 1024 * 1024

#: A pax or GNU long-name header is read whole and parsed by tarfile before
#: the member it describes, in an unsigned part of the tar. Endless data, and
#: CPU: the pax parser of Python < 3.11.10 / 3.12.6 is quadratic
#: (CVE-2024-6232), so a 1 MiB header of digits costs ~25 minutes of CPU and
#: 64 KiB costs 6.4 s; at 4 KiB the worst header costs 25-40 ms on 3.11.7. Our
#: writer emits a pax header only for a blob of 8 GiB or more (22 bytes:
#: ``size=``); names are ustar-sized.
MAX_EXTENDED_HEADER_BYTES: Final = 4 * 1024

#: Extended headers in a row before one member (a pax global and a pax local
#: header; a GNU long name and long link). tarfile recurses once per header,
#: so thousands in a row crash it with RecursionError; our writer emits at
#: most one.
MAX_EXTENDED_HEADERS_PER_MEMBER: Final = 2

#: Extended-header bytes in a whole bundle, the tar's unsigned structure
#: included after the signature check. CPU bound on unpatched Pythons
#: (above): at most 8 worst-case headers, ~0.3 s, however many members; room
#: for the ``size`` records of 1,400 blobs of 8 GiB or more.
MAX_EXTENDED_HEADER_TOTAL_BYTES: Final = 32 * 1024

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

#: A cosign signature payload, attestation envelope or referrers index is read into
#: memory whole; larger ones are not what cosign writes (registry-side endless data).
MAX_EVIDENCE_BLOB_BYTES: Final = 4 * 1024 * 1024

#: A package database in an image layer (dpkg status, apk installed, METADATA) is read
#: whole for the SBOM; a bigger one is skipped (a hostile layer's "status" of gigabytes).
MAX_PACKAGE_DB_BYTES: Final = 64 * 1024 * 1024

#: What the health-check child prints is read whole; a model that floods its
#: stdout cannot exhaust the agent's memory.
MAX_CHILD_OUTPUT_BYTES: Final = 4 * 1024 * 1024

#: What a hook, probe or image-sink command prints is kept only as its last
#: 64 KiB (the journal's ``output_tail``, the reason's last line). A chatty or
#: flooding command cannot bloat the journal or the agent's memory.
MAX_OUTPUT_TAIL_BYTES: Final = 64 * 1024

#: Such output is spooled to an unlinked temp file (not a pipe, so a daemon
#: the command leaves running cannot hold the agent), cut back to its tail
#: whenever it passes this size: a flood cannot fill the disk while it runs.
MAX_OUTPUT_SPOOL_BYTES: Final = 1024 * 1024

#: One attempt of an HTTP probe, connect to status line and headers, is a
#: hard deadline of at most this many seconds (and never past the probe
#: window): a server that answers one byte at a time (slowloris) cannot hold
#: the probe, and with it the switched release, past its window.
PROBE_ATTEMPT_S: Final = 2.0

#: Free space the agent keeps on top of what an install writes (default of
#: ``reserve_bytes`` in agent.yaml): a full disk must not stop the journal.
RESERVE_BYTES: Final = 16 * 1024 * 1024

#: A device's signed inventory or report is read whole on the host before its
#: signature is checked; a stick may carry anything. An inventory lists every
#: blob a device holds (about 100 bytes each), so this fits 100k blobs.
MAX_DEVICE_DOCUMENT_BYTES: Final = 16 * 1024 * 1024

#: Text shown on a terminal: one error line, and each value of a command's
#: human output. Much of it comes from unsigned media (member names, key ids,
#: version strings, file names): a hostile bundle must not flood a terminal
#: or push the "what to do" of an error off the screen. Longer text is cut and
#: says how much was left out (``airlock.console.inert``).
MAX_MESSAGE_CHARS: Final = 1000

#: Each string one journal entry records (a reason, a bundle path, a hook's
#: output tail). A refused bundle is journaled; without a bound, one refusal
#: could append megabytes that ``status`` and ``history`` then read on every
#: call. 64 KiB leaves room for the kept tail of a hook's output.
MAX_JOURNAL_TEXT_CHARS: Final = 64 * 1024

#: The journal's active file is sealed into a named segment
#: (``journal-<first line>.jsonl``) once it reaches this size, and only this
#: many sealed segments are kept (the oldest go; the chain and the counts
#: carry on across the cut). A device runs unattended for years and a stick of
#: refused bundles or a flapping health check journals on every pass: without
#: a bound the journal alone would fill the disk the releases need, and every
#: ``status`` would read all of it. 8 x 1 MiB keeps thousands of actions.
MAX_JOURNAL_SEGMENT_BYTES: Final = 1024 * 1024
MAX_JOURNAL_SEGMENTS: Final = 8

#: Releases a device keeps besides ``current``, ``previous`` and a held
#: install's fallback: after every good install the older ones are collected
#: (``gc --keep N``). A device fed a release a week for years must not fill its
#: disk with releases nobody can roll back to; 3 leaves a re-insertable
#: history. Changed per device with ``airlock-agent config --keep-releases N``.
KEEP_RELEASES: Final = 3

#: ``airlock-agent serve --log FILE``: the file is renamed to FILE.1 (FILE.2, …)
#: once it reaches this size and only this many old files are kept. ``serve``
#: logs every drop, check and scrape-time event for as long as the device runs;
#: a log nobody rotates must not fill ROOT's disk. The shipped logrotate snippet
#: rotates it daily as well; ``serve`` reopens FILE when logrotate moved it.
MAX_SERVE_LOG_BYTES: Final = 4 * 1024 * 1024
MAX_SERVE_LOG_FILES: Final = 3

#: Integers anywhere in a signed release (flag values included) lie within
#: I-JSON's exact range (RFC 7493). Beyond it, readers in other languages (jq,
#: a browser showing the fleet table) silently round them, so the value a
#: device acts on is not the one a person reviewed; and an integer of
#: thousands of digits costs CPU in every parser (CVE-2020-10735).
MAX_JSON_INTEGER: Final = 2**53 - 1

#: What YAML aliases may add to a release spec once expanded, counted as
#: characters of scalars plus one per node (about the bytes of the JSON it
#: becomes). Billion laughs: ten lines of aliases nesting aliases expand to
#: gigabytes in every step that walks the spec (checks, signing); real specs
#: use no aliases or a few small ones. A spec without aliases is not bounded
#: here: it is the author's own file, and its release must still fit
#: ``MAX_METADATA_BYTES``.
MAX_SPEC_ALIAS_EXPANSION: Final = 1024 * 1024

#: The agent's own small records under ROOT (``agent.yaml``,
#: ``transaction.json``, ``trust/sequences.json``, a release's ``installed.json``
#: and ``health.json``) are read whole by every command, ``status`` included.
#: Damaged state (a bundle copied over ``transaction.json``, a corrupt disk)
#: must not make each of them allocate without limit; ours are kilobytes, and
#: sequences of 20,000 release names still fit.
MAX_STATE_FILE_BYTES: Final = 1024 * 1024

#: Features one model input is summarised into for drift (columns or channels
#: beyond it are grouped). Label cardinality of the drift metric and CPU per
#: computation: an image input must not become 150k time series.
MAX_DRIFT_FEATURES: Final = 64

#: Bytes (uncompressed) one drift sample or reference ``.npz`` may hold; each
#: array's header is checked against it before the array is allocated. A
#: compression bomb or a header that lies about its shape in the samples folder
#: must not exhaust the long-running agent's memory. The input-contract count
#: (``agent.observe.input_contract``) streams the same files and skips one larger than
#: this on disk, so one huge file cannot make ``status`` or ``check`` slow.
MAX_DRIFT_FILE_BYTES: Final = 64 * 1024 * 1024

#: Newest sample files, and rows across them, one drift computation reads (the
#: input-contract count reads the same newest files). A folder the application
#: fills without end must not make each computation slower and larger than the
#: last.
MAX_DRIFT_SAMPLE_FILES: Final = 64
MAX_DRIFT_ROWS: Final = 100_000

#: Device samples one shadow check runs through both models (``shadow.samples``),
#: and the disagreements its result names. Each sample is two inferences inside
#: the health child's time budget; a signed spec asking for millions must not
#: keep an install (and the lock) busy for hours, nor fill ``health.json``.
MAX_SHADOW_SAMPLES: Final = 10_000
MAX_SHADOW_DISAGREEMENTS: Final = 20

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

#: Drops one poll of ``serve`` looks at, over all watched folders, and the
#: names it reads from one folder to find them. A stick of thousands of files
#: made ``serve`` cycle for ever (each outcome remembered pushed out an older
#: one, which was then installed and journaled again); fewer drops per scan
#: than ``MAX_DROP_MEMORY`` keeps every one of them remembered.
MAX_DROPS_PER_SCAN: Final = 100
MAX_DROP_SCAN_ENTRIES: Final = 10_000

#: Releases an operator rolled back that the drop folder must leave alone
#: (``ROOT/rolled-back.json``); the oldest marks go first. Each entry is one
#: explicit ``airlock-agent rollback``, so the bound is never met in practice;
#: it keeps a damaged or planted file from growing what every install reads.
MAX_OPERATOR_ROLLBACKS: Final = 256

#: Parts of one split bundle. Three-digit names (``part001`` … ``part999``)
#: keep ``cat BUNDLE.part*`` in order; 999 parts of 4000 MiB hold 3.9 TB. Also
#: bounds the file handles and stats a hostile ``parts.json`` can ask for.
MAX_PARTS: Final = 999

#: ``BUNDLE.parts.json`` is unsigned (anyone holding the stick can edit it) and
#: read whole before any part: endless data. 999 entries need about 150 KB.
MAX_PARTS_MANIFEST_BYTES: Final = 1024 * 1024

#: Samples one evaluation reads (``evaluate.max_samples`` may ask for fewer).
#: CPU exhaustion by a signed but careless release, as ``MAX_HEALTH_RUNS``:
#: the whole check still answers to ``timeout_s``, this keeps the build-time
#: contract check of the set bounded too.
MAX_EVAL_SAMPLES: Final = 10_000_000

#: Rows per inference of an evaluation (``evaluate.batch``), and the bytes one
#: batch of all inputs may take. The set is streamed one batch at a time, so a
#: batch is what memory holds; a header claiming huge rows must not make the
#: child (or the build) allocate gigabytes before the budget can kill it.
MAX_EVAL_BATCH: Final = 65_536
MAX_EVAL_BATCH_BYTES: Final = 256 * 1024 * 1024

#: Classes a classifier's confusion matrix may have (it is classes² integers:
#: 8 MiB at this bound). A label or output of a million classes must not
#: allocate a terabyte.
MAX_EVAL_CLASSES: Final = 1024

#: Classes whose per-class precision, recall, F1 and confusion-matrix row the
#: result carries (the metrics themselves are computed for every class). The
#: result goes into the journal and ``status``: 1024 classes of detail would
#: make each health entry hundreds of kilobytes.
MAX_DETAILED_CLASSES: Final = 64

#: Largest k of a ``topK_accuracy`` metric, and metrics one model may name.
#: Both only bound work and result size for a careless spec.
MAX_TOP_K: Final = 100
MAX_EVAL_METRICS: Final = 64

#: Allowed values one categorical input contract may list. They are compared
#: with every element of every sample (``numpy.isin``); the list is signed, so
#: only carelessness makes it long.
MAX_CONTRACT_VALUES: Final = 4096

#: ONNX Runtime thread counts a spec or device config may ask for (intra-op,
#: inter-op). Thousands of threads would take a small device down before the
#: memory budget sees it.
MAX_THREADS: Final = 256

#: ONNX Runtime's profile of the first inference, read back by the health
#: child to learn which execution provider ran each node (only when a check
#: uses more than one). A model of very many nodes must not make the child
#: parse hundreds of megabytes; past this the split is not reported.
MAX_PROFILE_BYTES: Final = 16 * 1024 * 1024
#: A detached signature (``airlock sign --detached``) travels from a signer's
#: machine to a coordinator, who reads it whole before checking it. One holds
#: a signature and its public key (an RSA-4096 one is under 3 KiB); a file
#: passed by mistake (a bundle, a disk image) must not be read into memory.
MAX_DETACHED_SIGNATURE_BYTES: Final = 64 * 1024

#: A site inventory (Ansible YAML) is read whole by the host tool; a file that
#: is not an inventory (an image picked by mistake) must not be parsed for long.
MAX_INVENTORY_BYTES: Final = 4 * 1024 * 1024
#: Hosts one inventory may list: every one of them gets a thread's worth of
#: bookkeeping and a row in the report.
MAX_SITE_HOSTS: Final = 10_000

#: What a command run on a device over SSH (``bundler.fleet.ssh.run``) may print
#: back, per stream: ``airlock-agent … --json`` for a rollout, a digest for a push;
#: more is a misbehaving device and is cut (an install or status answer is a few KB).
MAX_REMOTE_OUTPUT_BYTES: Final = 1024 * 1024

#: Longest ``install --hold``: a held release keeps the previous one armed and
#: any agent command may revert it; a week is plenty for a site to confirm.
MAX_HOLD_SECONDS: Final = 7 * 24 * 3600

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

#: How far after headquarters' clock a device report's times may lie. A signed
#: report dated 2099 would otherwise sort as the device's newest for ever (every
#: later, genuine report looks older) and skew ages in the fleet table.
MAX_REPORT_CLOCK_SKEW_S: Final = 86400

#: ``serve``'s listener (``airlock.relay.listener``): anyone on its network can open
#: connections and send nothing, or half a request. A connection that has said
#: nothing waits without a thread and is closed after HTTP_IDLE_TIMEOUT_S; at most
#: MAX_HTTP_CONNECTIONS wait (the oldest is closed first); a request once started
#: must arrive whole within HTTP_REQUEST_TIMEOUT_S; at most MAX_HTTP_HANDLERS are
#: answered at once. So threads and sockets stay bounded and /healthz answers.
HTTP_IDLE_TIMEOUT_S: Final = 30.0
HTTP_REQUEST_TIMEOUT_S: Final = 10.0
MAX_HTTP_CONNECTIONS: Final = 256
MAX_HTTP_HANDLERS: Final = 8

#: How far past the device's time floor (agent.timefloor) a clock may read before an
#: expiry it causes is explained as a clock in the future (cured by a time token), not
#: as a stale release. A year: a device offline longer than that meets expired releases.
CLOCK_AHEAD_SUSPECT_S = 366 * 24 * 3600
#: The site relay (``airlock.relay``): pulls hold a handler while a blob streams, so it
#: answers more at once than ``serve``'s page; each response closes its connection,
#: so an idle client holds none. 8 devices pulling a release with 3 layers each fit.
MAX_RELAY_HANDLERS: Final = 32
#: ``airlock-agent install http://…``: a dropped connection is resumed with ``Range``
#: at most this many times, each reconnect retried for up to HTTP_PULL_RETRY_S, each
#: read waiting at most HTTP_PULL_TIMEOUT_S; a relay that stays away is exit 5.
HTTP_PULL_RESUMES: Final = 5
HTTP_PULL_RETRY_S: Final = 60.0
HTTP_PULL_TIMEOUT_S: Final = 30.0
