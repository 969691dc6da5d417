"""The README's first command works: ./scripts/demo.sh, end to end, offline, on a busy machine.

The demo runs where a device already lives at ``/var/lib/airlock`` (another
organisation's, with its own trust root) and must neither read nor change it.
The test never writes the real ``/var/lib/airlock``: the demo runs in a private
mount namespace (``unshare --mount``, root only) whose ``/var/lib/airlock`` is a
tmpfs holding the foreign device; the real path is untouched (tests/conftest.py
checks it after the run). The demo writes only into the test's directory
(``--dir``), never the checkout's ``demo/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO
from tests.support.keyset import make_keyset

# In a private mount namespace: a tmpfs at /var/lib/airlock (when /var/lib has no
# airlock/, a tmpfs over /var/lib with each real entry bound back, so nothing is
# created on the real disk), a foreign device planted there, the demo run, and the
# foreign device's listing printed before and after.
_IN_NAMESPACE = r"""
set -eu
mount --make-rprivate /
if [ -d /var/lib/airlock ]; then
  mount -t tmpfs airlock-test /var/lib/airlock
else
  mkdir -p "$WORK/real-var-lib"
  mount --bind /var/lib "$WORK/real-var-lib"
  mount -t tmpfs airlock-test /var/lib
  for e in "$WORK"/real-var-lib/* "$WORK"/real-var-lib/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=/var/lib/$(basename "$e")
    if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$n"; continue; fi
    if [ -d "$e" ]; then mkdir "$n"; else touch "$n"; fi
    mount --bind "$e" "$n"
  done
  mkdir /var/lib/airlock
fi
"$AGENT" --root /var/lib/airlock init --trust "$FOREIGN" --device-id foreign-7 >/dev/null
listing() { (cd /var/lib/airlock && find . -printf '%p %s %T@\n' | sort | sha256sum); }
echo "foreign device before: $(listing)"
code=0
"$DEMO" --agent-from-kit --dir "$WORK/demo" --venv "$VENV" || code=$?
echo "foreign device after: $(listing)"
exit "$code"
"""


def test_demo_runs_the_whole_job_beside_a_foreign_device(tmp_path: Path) -> None:
    # The device part runs an agent installed only from a signed agent kit (issue 17):
    # the pip-installed agent is what every other test runs.
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the demo's test needs root and unshare (a private /var/lib/airlock)")
        pytest.skip("needs root and unshare for a private /var/lib/airlock")
    foreign = make_keyset(tmp_path / "other-org")
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_ROOT"}
    env.update(PYTHONPATH=str(REPO), WORK=str(tmp_path), FOREIGN=str(foreign.trust),
               DEMO=str(REPO / "scripts" / "demo.sh"), VENV=sys.prefix,
               AGENT=str(Path(sys.prefix) / "bin" / "airlock-agent"))
    r = subprocess.run(["unshare", "--mount", "sh", "-c", _IN_NAMESPACE], capture_output=True,
                       text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    # The foreign device is exactly as it was (the checkout's demo/: tests/conftest.py).
    before = re.search(r"^foreign device before: (\S+)", out, re.M)
    after = re.search(r"^foreign device after: (\S+)", out, re.M)
    assert before and after and before[1] == after[1], out
    demo = tmp_path / "demo"
    assert "OK vision-1.1.0.airlock" in out  # host verify
    assert re.search(r"^airlock-agent \S+ \(linux/\S+, Python [^;]+; kit ", out, re.M), out
    assert (demo / "bin" / "airlock-agent").is_symlink()
    assert (demo / "device" / "trust" / "root.json").read_bytes() == (demo / "root.json").read_bytes()
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
    # v7's classifier passes the host's check (goldens, labelled set) and is signed; on the
    # device the shadow check runs it beside v5 on the site's own 500 inputs and refuses it.
    assert "built vision-1.7.0.airlock: vision 1.7.0 (sequence 7)" in out
    assert out.count("install vision-1.7.0.airlock exited 4") == 1
    shadow = re.search(r"vision-7 not installed: health check of model 'classifier' failed: "
                       r"shadow check: agrees with vision-5 on (\d+\.\d)% of 500 device samples "
                       r"< min_agreement 97\.0% \(latency ratio [\d.]+\); worst disagreements: "
                       r"site-\d{3}\.npz\[\d+\] \(running \d, candidate \d\), .*; vision-5 stays "
                       r"active$", r.stderr, re.M)
    assert shadow and 70 < float(shadow[1]) < 90, r.stderr
    assert "active    vision 1.5.0 (sequence 5)" in out
    assert "classifier: accuracy 0.9" in out  # status shows the checked metrics
    assert "journal hash chain verified" in out
