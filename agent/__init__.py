"""Airlock's device side: ``airlock-agent``.

Installs a bundle in one streaming pass (verify, store, health-check, switch),
rolls back by itself when a check or probe fails, and survives kill -9 at any
instant. Start with docs/AGENT.md. The core state machine is flat here; the
wings are folders:

* ``layout``          ROOT's on-disk layout: the one module that knows where everything lives
* ``rootformat``      the version of ROOT's format: migrated forward, refused when newer
* ``shape``           the shape ROOT must have, checked by every command
* ``lock``            one mutating command at a time (an flock on ROOT/lock)
* ``recovery``        run under the lock first: finish or undo what a crash left
* ``journal``         the append-only, fsynced, hash-chained record of every action
* ``journal_counts``  what the journal adds up to (installs, rejections, rollbacks), carried across segments
* ``store``           the content store: every blob once, by sha256
* ``decrypt``         an encrypted release's keys unwrapped with the device's key, before any blob
* ``release_needs``   what of a release this device needs: a delta's expected blobs, its variants
* ``install``         a bundle in one streaming pass: verify, store, build, check, switch, probe
* ``http_source``     ``install http://…``: a relay's bundle streamed in, resumed with Range
* ``repair``          the same stick twice: a release the device has, re-verified and relinked
* ``activation``      what install, rollback and check share: health check, switch, probe
* ``switch``          atomic switching of ``current`` and ``previous``, and its undo record
* ``release_health``  the health check of a release, every model as installed
* ``challenger``      the shadow check's inputs, and the challenger staged with ``install --no-switch``
* ``promote``         the staged challenger switched to, as an install switches
* ``runtime``         the ONNX Runtime setup the device's application uses
* ``hooks``           the post-switch hook and the probe
* ``hold``            an install held until ``commit``, reverted by itself after
* ``rollback``        manual rollback and re-checking the active release
* ``operator_rollbacks`` releases an operator rolled back, which only ``install`` brings back
* ``timefloor``       the newest signed time seen (the time floor), and the time expiry is judged at
* ``directed``        a directed device: installs only what a signed visit names for its id
* ``feature_flags``   signed flags sets applied, shown, rolled back
* ``mirror_config``   containerd/k3s/RKE2/Docker mirror files pointing at a site relay, merged
* ``configure``       the device's settings: ring, image sink, trust, labels, stated facts
* ``facts``           the device's facts (ROOT/facts.json): probed at init and each start
* ``gc``              old releases and unused blobs removed
* ``fsck``            consistency check of ROOT, and its repair
* ``faults``          named crash points for the tests
* ``operations``      the one door to ROOT: the envelope of every change, and ``install_run``
* ``cli``             the ``airlock-agent`` command line: the registry, ``--root``, exit codes
* ``commands/``       one module per command (``agent_install``, ``agent_status``, …)
* ``observe/``        serve, the drop folder, metrics, pages, status, reports, inventories
* ``self/``           the agent's identity and its self-update from a kit
* ``sinks/``          where a release's container images go

    from agent.operations import install_run
"""
