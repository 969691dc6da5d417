"""The device's health check of a release: every model, as installed under its release directory.

The agent runs :func:`check_release` on a staged release before it switches
to it (and again on ``check`` and ``rollback``); the check itself, its child
process and its limits are :mod:`airlock.health`, the same one ``airlock
build`` runs on the host before it signs::

    report = check_release(Path("ROOT/releases/vision-7"), release)
    if not report.ok:
        raise HealthCheckError(report.reason)   # "health check of model 'detector' failed: ..."
    journal(report.to_dict())

Files it hands to each check (the agent hard-links them from its content store)::

    RELEASE_DIR/models/<model.name>/<model.file_name>   the ONNX model
    RELEASE_DIR/models/<model.name>/<data file>         its ONNX external data, if any
    RELEASE_DIR/models/<model.name>/inputs.npz          golden inputs, by input name
    RELEASE_DIR/models/<model.name>/outputs.npz         golden outputs, by output name

On a device every budget of the release is enforced: this is the hardware
it was written for. Each child runs in the release directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airlock.health import HealthReport, ModelFiles, check_model
from keys.release import ModelEntry, Release
from keys.signed_fields import GOLDEN_INPUTS_FILE, GOLDEN_OUTPUTS_FILE

__all__ = ["check_release", "installed_files"]


def installed_files(release_dir: Path, model: ModelEntry) -> ModelFiles:
    """Where an installed release keeps ``model``'s files (golden data only if it has any)."""
    mdir = release_dir / "models" / model.name
    return ModelFiles(
        model=mdir / model.file_name,
        inputs=mdir / GOLDEN_INPUTS_FILE if model.health.inputs is not None else None,
        outputs=mdir / GOLDEN_OUTPUTS_FILE if model.health.outputs is not None else None,
        data=tuple(mdir / name for name, _ in model.data),
    )


def check_release(release_dir: Path, release: Release, *,
                  providers: Sequence[str] | None = None) -> HealthReport:
    """Check every model of ``release`` as installed under ``release_dir``, one child each."""
    release_dir = Path(release_dir).absolute()  # the child runs in it: its paths must not be relative
    return HealthReport.of([
        check_model(m.name, installed_files(release_dir, m), m.health, cwd=release_dir,
                    providers=providers)
        for m in release.models
    ])
