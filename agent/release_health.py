"""The device's health check of a release: every model, as installed under its release directory.

The agent runs :func:`check_release` on a staged release before it switches
to it (and again on ``check`` and ``rollback``); the check itself, its child
process and its limits are :mod:`airlock.quality.health`, the same one ``airlock
build`` runs on the host before it signs::

    report = check_release(Path("ROOT/releases/vision-7"), release,
                           runtime=config.runtime,                # the device's providers
                           baselines=recorded, no_baseline="...")  # the running release's
    if not report.ok:
        raise HealthCheckError(report.reason)   # "health check of model 'detector' failed: ..."
    journal(report.to_dict())

Files it hands to each check (the agent hard-links them from its content store)::

    RELEASE_DIR/models/<model.name>/<model.file_name>   the ONNX model
    RELEASE_DIR/models/<model.name>/<data file>         its ONNX external data, if any
    RELEASE_DIR/models/<model.name>/inputs.npz          golden inputs, by input name
    RELEASE_DIR/models/<model.name>/outputs.npz         golden outputs, by output name
    RELEASE_DIR/models/<model.name>/eval_data.npz       evaluation set, one row per sample
    RELEASE_DIR/models/<model.name>/eval_labels.npz     its labels, named after the output scored

On a device every budget of the release is enforced: this is the hardware
it was written for, and a provider it lacks fails the check unless fallback
is allowed. Each check runs with the ONNX Runtime setup of the device's
application (``agent.yaml`` ``runtime``, see ``agent.runtime``), in its
own child, in the release directory. Relative evaluation thresholds compare
with ``baselines``: per model, the recorded evaluation of the release being
replaced (``agent.activation`` reads them from its ``health.json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.runtime import DeviceRuntime
from airlock.quality.health import Baseline, HealthReport, ModelFiles, check_model
from airlock.quality.shadow_check import ShadowAsk
from keys.release import ModelEntry, Release
from keys.signed_fields import (
    EVAL_DATA_FILE,
    EVAL_LABELS_FILE,
    GOLDEN_INPUTS_FILE,
    GOLDEN_OUTPUTS_FILE,
)

__all__ = ["check_release", "installed_files"]


def installed_files(release_dir: Path, model: ModelEntry) -> ModelFiles:
    """Where an installed release keeps ``model``'s files (golden data, evaluation set if any)."""
    mdir = release_dir / "models" / model.name
    evaluated = model.evaluation is not None
    return ModelFiles(
        model=mdir / model.file_name,
        inputs=mdir / GOLDEN_INPUTS_FILE if model.health.inputs is not None else None,
        outputs=mdir / GOLDEN_OUTPUTS_FILE if model.health.outputs is not None else None,
        data=tuple(mdir / name for name, _ in model.data),
        eval_data=mdir / EVAL_DATA_FILE if evaluated else None,
        eval_labels=mdir / EVAL_LABELS_FILE if evaluated else None,
    )


def check_release(release_dir: Path, release: Release, *,
                  providers: Sequence[str] | None = None, runtime: DeviceRuntime | None = None,
                  baselines: Mapping[str, Baseline] | None = None,
                  no_baseline: str = "no release is running to compare with",
                  shadows: Mapping[str, ShadowAsk] | None = None) -> HealthReport:
    """Check every model of ``release`` as installed under ``release_dir``, one child each.

    ``runtime`` is the device's ONNX Runtime setup (``providers``, a
    caller's, wins over it); ``baselines`` the recorded evaluation per model
    of the release being replaced (``no_baseline`` says why there is none);
    ``shadows`` per model, the comparison with the running model on the
    device's samples (``agent.challenger``), run in the model's own child.
    """
    release_dir = Path(release_dir).absolute()  # the child runs in it: its paths must not be relative
    device = runtime or DeviceRuntime()
    return HealthReport.of([
        check_model(m.name, installed_files(release_dir, m), m.health, cwd=release_dir,
                    providers=providers, runtime=device.choose(m.health),
                    evaluation=m.evaluation, baseline=(baselines or {}).get(m.name),
                    no_baseline=no_baseline, shadow=(shadows or {}).get(m.name))
        for m in release.models
    ])
