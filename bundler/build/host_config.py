"""The host's own settings: flag > environment > config file > default, each with where it came from.

    from bundler.build.host_config import load_host_config
    config = load_host_config(spec=Path("airlock.yaml"))
    config.value("cache")           # Path('/home/me/.cache/airlock')
    config.source("cache")          # 'file /srv/site/airlock.toml'

An operator who builds every day should not retype ``--key``,
``--passphrase-env``, ``--insecure`` and ``--cache``. The config file is the
first of ``airlock.toml`` beside the spec, ``airlock.toml`` in the current
directory, ``$XDG_CONFIG_HOME/airlock/config.toml`` (``~/.config`` when
unset); only that one is read, so what is in force is what one file says::

    key = ["keys/release.key"]          # or one string
    passphrase_env = "AIRLOCK_PASS"
    insecure = ["localhost:5000"]
    cache = "/var/cache/airlock"        # relative paths: to the file's directory
    fleet = "airlock-fleet"
    db = "postgresql://hq@db.example/airlock"   # the ledger (default: FLEET/ledger.sqlite)

The environment overrides the file (``AIRLOCK_KEY`` and ``AIRLOCK_INSECURE``
comma-separated, ``AIRLOCK_PASSPHRASE_ENV``, ``AIRLOCK_CACHE``,
``AIRLOCK_FLEET``, ``AIRLOCK_DB``) and a flag overrides both. The device never reads this: the
agent keeps its own configuration and no TOML.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.errors import UsageError

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

__all__ = ["ENV", "FILE_NAME", "HostConfig", "Setting", "apply_to_args", "config_file",
           "load_host_config"]

FILE_NAME = "airlock.toml"
#: Each setting and the environment variable that sets it.
ENV = {"key": "AIRLOCK_KEY", "passphrase_env": "AIRLOCK_PASSPHRASE_ENV",
       "insecure": "AIRLOCK_INSECURE", "cache": "AIRLOCK_CACHE", "fleet": "AIRLOCK_FLEET",
       "db": "AIRLOCK_DB"}
_LISTS = ("key", "insecure")
_PATHS = ("cache", "fleet")


@dataclass(frozen=True)
class Setting:
    """One value in force and where it came from: ``flag``, ``env VAR``, ``file PATH``, ``default``."""

    value: Any
    source: str


@dataclass(frozen=True)
class HostConfig:
    file: Path | None
    settings: dict[str, Setting]

    def value(self, name: str) -> Any:
        return self.settings[name].value

    def source(self, name: str) -> str:
        return self.settings[name].source

    def to_dict(self) -> dict[str, Any]:
        def shown(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else v
        return {"file": None if self.file is None else str(self.file),
                "settings": {k: {"value": shown(s.value), "source": s.source}
                             for k, s in self.settings.items()}}


def _defaults(names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": [], "passphrase_env": None, "insecure": [],
                           "fleet": Path("airlock-fleet"), "db": None}
    if "cache" in names:
        # Only when asked: bundler.build.cache brings numpy (a third of hq status' start-up).
        from bundler.build.cache import default_cache_dir

        out["cache"] = default_cache_dir()
    return {n: out[n] for n in names}


def config_file(spec: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The one config file in force, or None."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    places = [*([spec.parent / FILE_NAME] if spec is not None else []), Path(FILE_NAME),
              Path(xdg) / "airlock" / "config.toml"]
    return next((p for p in places if p.is_file()), None)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path}: cannot read it ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path}: not TOML ({e})") from None
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in ENV:
            raise UsageError(f"config file {path}: unknown key '{name}' (known: "
                             f"{', '.join(ENV)})")
        if name in _LISTS and isinstance(value, str):
            value = [value]
        if name in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise UsageError(f"config file {path}: key '{name}' must be a string or a list "
                                 "of strings")
        elif not isinstance(value, str) or not value:
            raise UsageError(f"config file {path}: key '{name}' must be a non-empty string")
        if name in _PATHS:
            value = path.parent / Path(value).expanduser()
        elif name == "key":
            # A key file named relative to the config file, as a path flag is to the cwd;
            # "hsm:", "envvar:" and other signer URIs are kept as written.
            value = [str(path.parent / v) if ":" not in v else v for v in value]
        out[name] = value
    return out


def _from_env(name: str, raw: str) -> Any:
    if name in _LISTS:
        return [v.strip() for v in raw.split(",") if v.strip()]
    return Path(raw) if name in _PATHS else raw


def load_host_config(spec: Path | None = None, flags: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None,
                     only: Sequence[str] | None = None) -> HostConfig:
    """Every setting in force: ``flags`` (None or empty = not given) > environment > file > default."""
    env = os.environ if environ is None else environ
    path = config_file(spec, env)
    from_file = _read_file(path) if path is not None else {}
    settings: dict[str, Setting] = {}
    for name, default in _defaults(list(ENV) if only is None else only).items():
        flag = (flags or {}).get(name)
        if flag not in (None, []):
            settings[name] = Setting(flag, "flag")
        elif env.get(ENV[name]):
            settings[name] = Setting(_from_env(name, env[ENV[name]]), f"env {ENV[name]}")
        elif name in from_file:
            settings[name] = Setting(from_file[name], f"file {path}")
        else:
            settings[name] = Setting(default, "default")
    return HostConfig(path, settings)


def apply_to_args(a: argparse.Namespace, spec: Path | None = None) -> HostConfig:
    """Fill the options of ``a`` the command has (``--key``, ``--cache`` ...) from the config."""
    names = [n for n in ENV if hasattr(a, n)]
    config = load_host_config(spec, {n: getattr(a, n) for n in names}, only=names)
    for n in names:
        # build --unsigned asks for no key: a configured one must not contradict it.
        if n == "key" and getattr(a, "unsigned", False) and config.source(n) != "flag":
            continue
        setattr(a, n, config.value(n))
    return config
