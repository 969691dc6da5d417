"""Reading an image sink's settings, shared by the backends.

    timeout = config_number(config, "timeout_s", 600.0)     # agent/sinks/command.py
    insecure = config_bool(config, "insecure", False)       # agent/sinks/registry.py

Settings come from ``agent.yaml`` as YAML values or from ``--sink-option
KEY=VALUE`` as strings; both spellings read the same, and a bad value is a
UsageError (exit 2) naming the key. A module of its own so that the backends
need not import the package that chooses between them.
"""

from __future__ import annotations

from typing import Any

from airlock.errors import UsageError

__all__ = ["config_bool", "config_number"]


def config_bool(config: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean setting; ``--sink-option KEY=VALUE`` gives strings."""
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"image sink setting {key!r} must be true or false, got {value!r}")


def config_number(config: dict[str, Any], key: str, default: float) -> float:
    """A positive number setting, given as a number or a string."""
    value = config.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number > 0:
        raise UsageError(f"image sink setting {key!r} must be a positive number, got {value!r}")
    return number
