"""The model check both sides run: health, evaluation, input contracts, drift.

The agent runs it before it switches, the bundler before it signs, with the
same code and the same words:

* ``health``       one isolated child per model, time and memory limits, the judges
* ``health_process`` the child as a process: spawned isolated, polled, killed as a group
* ``_health_child`` the child: load with ONNX Runtime, goldens, latency, evaluation
* ``model_skeleton`` a model's large weights mapped from its file, not copied (the child's)
* ``evaluation``   metrics on a labelled set, streamed, and their thresholds
* ``contract``     input contracts against a model's signature and against data
* ``npz_batches``  an ``.npz`` read a batch of rows at a time
* ``drift``        the population stability index of samples against a reference
* ``shadow_check`` the shadow check's policy: the child's job, the verdict on agreement
* ``shadow_run``   the shadow comparison in the child: both models on the device's samples

Example::

    from airlock.quality.health import check_model

    result = check_model("detector", files, budgets, cwd=release_dir)
"""
