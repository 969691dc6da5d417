"""The README's first command works: ./scripts/demo.sh, end to end, offline."""

from __future__ import annotations

import os
import re
import subprocess

from tests.support.cli import REPO


def test_demo_runs_the_whole_job() -> None:
    # The device part runs an agent installed only from a signed agent kit (issue 17):
    # the pip-installed agent is what every other test runs.
    r = subprocess.run(
        [str(REPO / "scripts" / "demo.sh"), "--agent-from-kit"],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AIRLOCK_ROOT")},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    assert "OK vision-1.1.0.airlock" in out  # host verify
    assert re.search(r"^airlock-agent \S+ \(linux/\S+, Python [^;]+; kit ", out, re.M), out
    assert (REPO / "demo" / "bin" / "airlock-agent").is_symlink()
    assert "installed vision 1.2.0 (sequence 2), active" in out
    # v3's bad model is refused at the desk (exit 4, nothing written) before it is
    # signed with --no-check; then the bad model and the failing probe both roll back.
    assert "build vision-3.yaml exited 4" in out
    assert out.count("install vision-1.3.0.airlock exited 4") == 1
    assert out.count("install vision-1.4.0.airlock exited 4") == 1
    # v6's classifier passes its golden check and the host check (min_delta needs the
    # running release), then the device refuses it for losing accuracy against v5.
    assert "accuracy min_delta not applied: the host knows no running release" in out
    assert out.count("install vision-1.6.0.airlock exited 4") == 1
    assert "with min_delta -0.01) (on 2000 evaluation samples); vision-5 stays active" in r.stderr
    assert "active    vision 1.5.0 (sequence 5)" in out
    assert "classifier: accuracy 0.9" in out  # status shows the checked metrics
    assert "journal hash chain verified" in out
