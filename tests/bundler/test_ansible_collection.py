"""The Ansible collection airlock.edge (packaging/ansible/) against a site of real sshd devices.

The collection is built and installed exactly as packaging/ansible/README.md says (its
``sh`` block runs line by line in a scratch directory), into a temporary collections
path: Ansible's home, temp dirs and known_hosts are the test's, never ``~/.ansible``.
The devices are tests/support/site.py's: each its own sshd and agent ROOT, on vision-1.

The example playbook moves every device to vision-2 in two waves (the canary first)
and a second run changes nothing; a release failing its health check stops the play
at the canary (``max_fail_percentage: 0``) and the other devices never see it. Each
module runs twice (the second run changes nothing) and in check mode (nothing changes);
a failure is the agent's one line and exit code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import REPO
from tests.support.device import agent_json
from tests.support.keyset import Keys
from tests.support.site import TestSite, site_template
from tests.support.spec import build, write_spec
from tests.support.sshd import need_sshd

pytestmark = pytest.mark.integration

COLLECTION = REPO / "packaging" / "ansible"
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.M)


def _readme_lines() -> list[str]:
    text = (COLLECTION / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def bundles(keyset: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_sshd()
    if not (BIN / "ansible-playbook").exists():
        pytest.skip("ansible-core is not installed beside this Python (pip install ansible-core)")
    work = tmp_path_factory.mktemp("releases")

    def make(sequence: int, **kw: Any) -> Path:
        spec = write_spec(work, sequence=sequence, version=f"1.{sequence}", runs=2, **kw)
        return build(spec, work / f"vision-{sequence}.airlock", [keyset.release_key])

    return {"trust": keyset.trust, "v1": make(1), "v2": make(2), "bad": make(3, wrong=True)}


@pytest.fixture(scope="module")
def template(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return site_template(tmp_path_factory.mktemp("template") / "root", bundles["trust"],
                         bundles["v1"])


@pytest.fixture
def site(bundles: dict[str, Path], template: Path, tmp_path: Path) -> Iterator[TestSite]:
    """Three devices on vision-1; each host's bundle directory is its own."""
    with TestSite.start(tmp_path / "site", bundles["trust"], ["canary", "prod", "prod"],
                        template=template) as s:
        s.write_inventory({n: {"airlock_bundle_dir": str(s.dir / n / "incoming")}
                           for n in s.servers})
        yield s


def _env(work: Path, known_hosts: Path) -> dict[str, str]:
    """Ansible, hermetic: its home, temp dirs, config and known_hosts are under ``work``."""
    for d in ("home", "ltmp", "rtmp"):
        (work / d).mkdir(exist_ok=True)
    (work / "ansible.cfg").write_text("[defaults]\n")
    return {**os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
            "ANSIBLE_HOME": str(work / "home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "ltmp"),
            "ANSIBLE_REMOTE_TEMP": str(work / "rtmp"),
            "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
            "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={known_hosts} "
                                "-o StrictHostKeyChecking=yes -o ControlMaster=no",
            "ANSIBLE_PIPELINING": "1",
            # Debian's own Python runs the modules, as on a device (discovery could find a
            # pyenv shim of this machine's login shell).
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3" if Path("/usr/bin/python3").exists()
                                          else "auto_silent",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": "5"}


def _install_collection(work: Path, site: TestSite, bundle: Path) -> dict[str, str]:
    """The README's lines, in ``work``: build, install, and the example playbook run."""
    env = _build_collection(work, site.known_hosts)
    (work / "site.yml").symlink_to(site.inventory)
    (work / "vision-2.airlock").symlink_to(bundle)
    return env


def _build_collection(work: Path, known_hosts: Path) -> dict[str, str]:
    """The README's build and install lines, run in ``work``; Ansible's environment."""
    work.mkdir(exist_ok=True)
    (work / "packaging").symlink_to(REPO / "packaging")
    env = _env(work, known_hosts)
    for line in _readme_lines()[:2]:
        r = subprocess.run(["bash", "-ec", line], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
    return env


def test_the_built_collection_documents_every_module(tmp_path: Path) -> None:
    """ansible-doc reads each module's documentation (what AWX and Galaxy show) from the
    collection as built and installed."""
    if not (BIN / "ansible-doc").exists():
        pytest.skip("ansible-core is not installed beside this Python (pip install ansible-core)")
    env = _build_collection(tmp_path / "ops", tmp_path / "known_hosts")
    modules = ["install", "status", "commit", "inventory", "report"]
    r = subprocess.run([str(BIN / "ansible-doc"), "--json", *(f"airlock.edge.{m}" for m in modules)],
                       cwd=tmp_path / "ops", env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    options = {name.split(".")[-1]: sorted(d["doc"]["options"]) for name, d in docs.items()}
    assert options == {"install": ["agent", "bundle", "hold", "root", "switch", "wait"],
                       "status": ["agent", "root"], "commit": ["agent", "root"],
                       "inventory": ["agent", "dest", "root"],
                       "report": ["agent", "dest", "root"]}
    assert all(d["doc"]["short_description"] and d["examples"] for d in docs.values())


def _playbook(work: Path, env: dict[str, str], line: str,
              *extra: str) -> tuple[int, str, dict[str, tuple[int, int, int, int]]]:
    r = subprocess.run(["bash", "-ec", line + "".join(f" {x}" for x in extra)], cwd=work,
                       env=env, capture_output=True, text=True, timeout=600)
    recap = {m[1]: (int(m[2]), int(m[3]), int(m[4]), int(m[5])) for m in RECAP.finditer(r.stdout)}
    return r.returncode, r.stdout + r.stderr, recap


def _hosts_of(task: str, out: str) -> list[list[str]]:
    """Per occurrence of TASK [task] (one per wave), the hosts it ran on, sorted: the hosts
    of one wave run at once and finish in any order."""
    runs = []
    for part in out.split(f"TASK [{task}]")[1:]:
        body = part.split("\nTASK [", 1)[0].split("\nPLAY", 1)[0]
        runs.append(sorted(re.findall(r"^(?:ok|changed|failed|fatal): \[([^\]]+)\]", body,
                                      re.M)))
    return runs


def test_the_example_rolls_out_in_two_waves_and_again_changes_nothing(
        site: TestSite, bundles: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "ops"
    env = _install_collection(work, site, bundles["v2"])
    assert (work / "collections" / "ansible_collections" / "airlock" / "edge"
            / "plugins" / "modules" / "install.py").is_file()
    play = _readme_lines()[2]

    code, out, recap = _playbook(work, env, play)
    assert code == 0, out[-4000:]
    assert _hosts_of("Install it, held until this play has seen it run", out) == [
        ["cam-1"], ["cam-2", "cam-3"]]
    assert all(site.active(n) == "vision-2" for n in site.servers)
    assert all(agent_json(r, "status")["hold"] is None for r in site.roots.values())  # committed
    assert {n: c[1] for n, c in recap.items()} == {n: 4 for n in site.servers}  # dir, copy, install, commit

    code, out, recap = _playbook(work, env, play)
    assert code == 0, out[-4000:]
    assert {n: c[1] for n, c in recap.items()} == {n: 0 for n in site.servers}, out[-3000:]

    # Check mode with another release: every device says it would change, none does.
    (work / "vision-1.airlock").symlink_to(bundles["v1"])
    code, out, recap = _playbook(work, env, play.replace("vision-2", "vision-1"), "--check")
    assert code == 0, out[-4000:]
    assert all(c[1] >= 2 for c in recap.values()), out[-3000:]
    assert all(site.active(n) == "vision-2" for n in site.servers)
    assert not any((site.dir / n / "incoming" / "vision-1.airlock").exists() for n in site.servers)


def test_a_canary_failing_its_health_check_stops_the_play_at_the_budget(
        site: TestSite, bundles: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "ops"
    env = _install_collection(work, site, bundles["bad"])
    code, out, recap = _playbook(work, env, _readme_lines()[2])
    assert code != 0
    assert "cam-1" in recap and recap["cam-1"][3] == 1, out[-3000:]  # failed
    assert "(exit 4)" in out and "health" in out
    assert "cam-2" not in recap and "cam-3" not in recap  # wave 2 never started
    assert all(site.active(n) == "vision-1" for n in site.servers)
    assert not (site.dir / "cam-2" / "incoming").exists()


_MODULES = """
- hosts: cam-1
  gather_facts: false
  tasks:
    - airlock.edge.install: {bundle: "%(bundle)s", hold: 600, agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
    - airlock.edge.status: {agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
    - airlock.edge.commit: {agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
    - airlock.edge.inventory: {dest: "%(dir)s/inventory.json", agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
    - airlock.edge.report: {dest: "%(dir)s/report.json", agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
    - airlock.edge.report: {dest: "%(dir)s/report.json", agent: "{{ airlock_agent }}", root: "{{ airlock_root }}"}
      register: again
    - ansible.builtin.assert:
        that: again is not changed and again.to_line == airlock_report.to_line
      when: not ansible_check_mode
    - ansible.builtin.copy:
        dest: "%(dir)s/facts.yml"
        content: "{{ {'active': airlock_status.active.id, 'device': airlock_inventory.device_id} | to_nice_yaml }}"
"""


def test_each_module_is_idempotent_check_mode_changes_nothing_and_failures_say_why(
        site: TestSite, bundles: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "ops"
    env = _install_collection(work, site, bundles["v2"])
    out_dir = tmp_path / "device-files"
    play = work / "modules.yml"
    play.write_text(_MODULES % {"bundle": bundles["v2"], "dir": out_dir})
    line = f"ansible-playbook -i site.yml {play}"
    root = site.roots["cam-1"]

    # Check mode first: nothing on the device changes, though all of it would.
    journal = (root / "journal.jsonl").read_bytes()
    code, out, recap = _playbook(work, env, line, "--check", "-v")
    assert code == 0, out[-4000:]
    # install, inventory, report (twice: the first wrote nothing), the facts file; commit
    # finds no hold, since install did not run
    assert recap["cam-1"][1] == 5, out[-3000:]
    assert "would install vision-2 and switch from vision-1" in out
    assert site.active("cam-1") == "vision-1" and not out_dir.exists()
    assert (root / "journal.jsonl").read_bytes() == journal  # not even a report mark

    code, out, recap = _playbook(work, env, line)
    assert code == 0, out[-4000:]
    assert recap["cam-1"][1] == 5, out[-3000:]  # install, commit, inventory, report, facts
    assert site.active("cam-1") == "vision-2" and agent_json(root, "status")["hold"] is None
    facts = yaml.safe_load((out_dir / "facts.yml").read_text())
    assert facts == {"active": "vision-2", "device": "cam-1"}
    assert (out_dir / "report.json").is_file() and (out_dir / "inventory.json").is_file()

    # Again: nothing to install, nothing held, the inventory as written. Only the report
    # changes: the agent journals each re-verification of the active release's bundle.
    code, out, recap = _playbook(work, env, line)
    assert code == 0, out[-4000:]
    assert recap["cam-1"][1] == 1 and _hosts_of("airlock.edge.report", out)[0] == ["cam-1"]
    assert "changed: [cam-1]" not in out.split("TASK [airlock.edge.report]")[0], out[-3000:]
    code, out, recap = _playbook(work, env, line, "--check")
    assert code == 0, out[-4000:]
    assert recap["cam-1"][1] == 0, out[-3000:]

    # A failure is the agent's line and its exit code.
    play.write_text(_MODULES.split("    - airlock.edge.status")[0].replace(
        "%(bundle)s", str(tmp_path / "nowhere.airlock")).replace("%(dir)s", str(out_dir))
        )
    code, out, recap = _playbook(work, env, line)
    assert code != 0 and recap["cam-1"][3] == 1
    assert re.search(r"airlock-agent install: .*nowhere\.airlock.* \(exit 2\)", out), out[-3000:]
