"""The host config file: airlock.toml and the environment stand in for flags, each shown with its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_airlock
from tests.support.keyset import Keys
from tests.support.spec import write_spec


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in ("AIRLOCK_KEY", "AIRLOCK_PASSPHRASE_ENV", "AIRLOCK_INSECURE", "AIRLOCK_CACHE"):
        monkeypatch.delenv(var, raising=False)


def test_build_signs_with_the_key_named_in_airlock_toml_beside_the_spec(
        keyset: Keys, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    spec = write_spec(project)
    (project / "airlock.toml").write_text(f'key = "{keyset.release_key}"\n')
    out = tmp_path / "v.airlock"
    # Run from elsewhere: the file beside the spec is the one read.
    r = run_airlock("build", spec, "--no-check", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    v = run_airlock("verify", out, "--trust", keyset.trust, "--json")
    assert v.returncode == 0, v.stdout + v.stderr


def test_config_show_names_each_source_and_env_beats_file_beats_default(tmp_path: Path) -> None:
    (tmp_path / "airlock.toml").write_text(
        'cache = "c-from-file"\ninsecure = ["localhost:5000"]\nfleet = "f"\n')
    r = run_airlock("config", "show", "--json", cwd=tmp_path,
                    env={"AIRLOCK_FLEET": str(tmp_path / "env-fleet")})
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["settings"]
    assert s["cache"] == {"value": "c-from-file", "source": "file airlock.toml"}
    assert s["insecure"]["value"] == ["localhost:5000"]
    assert s["fleet"] == {"value": str(tmp_path / "env-fleet"), "source": "env AIRLOCK_FLEET"}
    assert s["passphrase_env"] == {"value": None, "source": "default"}
    text = run_airlock("config", "show", cwd=tmp_path).stdout
    assert "c-from-file  (file airlock.toml)" in text


def test_a_flag_beats_the_environment_and_the_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from bundler.build.host_config import load_host_config

    (tmp_path / "airlock.toml").write_text('cache = "file"\n')
    monkeypatch.chdir(tmp_path)
    env = {"AIRLOCK_CACHE": "env"}
    assert load_host_config(environ=env).settings["cache"].source == "env AIRLOCK_CACHE"
    flagged = load_host_config(flags={"cache": Path("flag")}, environ=env)
    assert (flagged.value("cache"), flagged.source("cache")) == (Path("flag"), "flag")


def test_the_fleet_directory_comes_from_the_user_config(
        keyset: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keys.keyfile import generate_keypair

    monkeypatch.delenv("AIRLOCK_FLEET", raising=False)
    conf = tmp_path / "xdg" / "airlock"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text(f'fleet = "{tmp_path / "hq"}"\n')
    _, pub = generate_keypair("cam-7", tmp_path)
    r = run_airlock("report", "enroll", pub, "--device-id", "cam-7", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hq").is_dir() and not (tmp_path / "airlock-fleet").exists()


@pytest.mark.parametrize(("body", "says"), [
    ('kee = "x"\n', "unknown key 'kee'"),
    ("insecure = 5\n", "key 'insecure' must be a string or a list"),
    ("cache = [\n", "not TOML"),
])
def test_a_bad_config_file_is_one_line_exit_2_naming_file_and_key(
        tmp_path: Path, body: str, says: str) -> None:
    (tmp_path / "airlock.toml").write_text(body)
    r = run_airlock("config", "show", cwd=tmp_path)
    assert r.returncode == 2
    assert says in r.stderr and "config file airlock.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
