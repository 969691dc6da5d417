"""`airlock fleet hosts` reads real Ansible inventories: INI, host ranges, group_vars/, host_vars/.

The built-in reader and ``ansible-inventory --list`` (run as a program) must agree host by host
on the same inventories; without Ansible installed the comparison skips (fails under CI=true).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bundler.fleet.ansible_program import find_ansible_inventory
from tests.support.cli import run_airlock

YAML_SITE = """\
all:
  vars:
    ansible_user: root
    airlock_root: /srv/airlock
  children:
    north:
      hosts:
        cam[01:20].north:
          airlock_ring: canary
        gate[a:c]:
      vars:
        ansible_port: 2200
    south:
      children:
        deep:
          hosts:
            cam02.north:
            s1:
              ansible_host: 10.0.0.5
            s2:2201:
"""

INI_SITE = """\
top1 ansible_user=x ansible_port=23
[web]
w[1:3] airlock_ring=stable
w9:2201 ansible_host=1.2.3.4 airlock_agent="sudo airlock-agent"
[web:vars]
ansible_user=webop
[site:children]
web
[site:vars]
airlock_root=/opt/airlock
"""


def _yaml_site(tmp_path: Path) -> Path:
    (tmp_path / "group_vars" / "north").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "site.yml").write_text(YAML_SITE)
    # The user set in group_vars/ only: the host was refused before.
    (tmp_path / "group_vars" / "north" / "login.yml").write_text("ansible_user: op\n")
    (tmp_path / "group_vars" / "deep.yaml").write_text("airlock_ring: deep\n")
    (tmp_path / "host_vars" / "s1.yml").write_text("ansible_port: 2222\n")
    return tmp_path / "site.yml"


def _ini_site(tmp_path: Path) -> Path:
    (tmp_path / "site.ini").write_text(INI_SITE)
    return tmp_path / "site.ini"


def _hosts(inventory: Path, reader: str) -> dict[str, Any]:
    p = run_airlock("fleet", "hosts", "--inventory", inventory, "--inventory-reader", reader,
                    "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_builtin_reader_reads_ini_ranges_and_vars_directories(tmp_path: Path) -> None:
    got = _hosts(_yaml_site(tmp_path / "y"), "builtin")
    assert got["reader"] == "builtin"
    hosts = {h["name"]: h for h in got["hosts"]}
    assert [h["name"] for h in got["hosts"]][:3] == ["cam01.north", "cam02.north", "cam03.north"]
    assert len([n for n in hosts if n.startswith("cam")]) == 20 and "gateb" in hosts
    assert hosts["cam07.north"]["user"] == "op" and hosts["cam07.north"]["address"].endswith(":2200")
    assert hosts["cam02.north"]["ring"] == "canary"  # the host's own variable beats group_vars/
    assert hosts["s1"]["ring"] == "deep" and hosts["s1"]["address"] == "10.0.0.5:2222"
    assert hosts["s2"]["user"] == "root" and hosts["s2"]["address"].endswith(":2201")
    assert hosts["cam02.north"]["groups"] == ["deep", "north", "south"]

    ini = {h["name"]: h for h in _hosts(_ini_site(tmp_path), "builtin")["hosts"]}
    assert ini["w2"]["user"] == "webop" and ini["w2"]["root"] == "/opt/airlock"
    assert ini["w9"]["address"] == "1.2.3.4:2201" and ini["w9"]["agent"] == "sudo airlock-agent"
    assert ini["top1"]["groups"] == [] and ini["w1"]["groups"] == ["site", "web"]


def test_a_range_too_large_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    inv = tmp_path / "site.ini"
    inv.write_text("[cams]\ncam[0:99999999] ansible_user=op\n")
    p = run_airlock("fleet", "hosts", "--inventory", inv, "--inventory-reader", "builtin",
                    timeout=60)
    assert p.returncode == 2 and "more than" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def _need_ansible() -> str:
    program = find_ansible_inventory()
    if program is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ansible-inventory is missing (pip install ansible-core)")
        pytest.skip("ansible-inventory is not installed")
    return program


@pytest.mark.parametrize("make", [_yaml_site, _ini_site], ids=["yaml-ranges-vars-dirs", "ini"])
def test_fleet_hosts_equals_ansible_inventory_list(tmp_path: Path, make: Any) -> None:
    program = _need_ansible()
    inventory = make(tmp_path)
    listed = json.loads(subprocess.run([program, "-i", str(inventory), "--list"], check=True,
                                       capture_output=True, timeout=120).stdout)
    builtin, ansible = _hosts(inventory, "builtin"), _hosts(inventory, "ansible")
    assert ansible["reader"] == "ansible-inventory"
    assert builtin["hosts"] == ansible["hosts"]  # host by host, same order, same fields
    hostvars = listed["_meta"]["hostvars"]
    assert sorted(h["name"] for h in builtin["hosts"]) == sorted(hostvars)
    for h in builtin["hosts"]:
        v = hostvars[h["name"]]
        assert h["user"] == v["ansible_user"]
        address, port = v.get("ansible_host", h["name"]), int(v.get("ansible_port", 22))
        assert h["address"] == (address if port == 22 else f"{address}:{port}")
        assert h["ring"] == v.get("airlock_ring") and h["root"] == v.get("airlock_root", "/var/lib/airlock")
    # And the built-in reader's --list document is Ansible's, variable for variable.
    from bundler.fleet.inventory_files import read_inventory

    assert read_inventory(inventory)["_meta"]["hostvars"] == hostvars
