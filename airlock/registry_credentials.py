"""Registry credentials, found as ``docker pull`` finds them: config.json, then credential helpers.

The registry client (``airlock.registry``) hands what this finds to oras's
token backend; it is a module of its own because it reads a user's secrets
and runs their helper programs, and that deserves to be read alone::

    creds = docker_credentials("127.0.0.1:5000")            # $DOCKER_CONFIG or ~/.docker
    creds = docker_credentials("ghcr.io", Path("auth.json")) # a given file must exist
    if creds: user, password = creds
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path
from typing import NamedTuple

from airlock.errors import RegistryConfigError
from airlock.spawn import child_env

__all__ = ["Credentials", "docker_credentials"]

# Where ``docker login`` (no host given) stores Docker Hub credentials.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
_DOCKER_HUB = "registry-1.docker.io"


class Credentials(NamedTuple):
    """A user name and password (or token) for one registry."""

    user: str
    password: str


def docker_credentials(host: str, config: Path | None = None) -> Credentials | None:
    """Credentials for ``host`` from a Docker ``config.json``, found as ``docker pull`` finds them.

    The file is ``config``, else ``$DOCKER_CONFIG/config.json``, else
    ``~/.docker/config.json``; a missing default file means no credentials.
    ``auths.HOST.auth`` (base64 ``user:password``) comes first, then
    ``credHelpers.HOST`` or ``credsStore`` through Docker's credential-helper
    protocol (``docker-credential-NAME get``). ``localhost`` and
    ``127.0.0.1`` stand for each other; Docker Hub is also found under the
    key ``docker login`` uses.

    oras-py has a reader too, but it ignores ``$DOCKER_CONFIG`` and keeps
    what it finds in private attributes, so Airlock reads the file itself
    and hands the result to oras through ``set_basic_auth``.
    """
    path = (
        config or Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    )
    try:
        cfg = json.loads(path.read_bytes())
    except FileNotFoundError:
        if config is not None:
            raise RegistryConfigError(f"registry auth file {path} does not exist") from None
        return None
    except (OSError, ValueError) as e:
        raise RegistryConfigError(f"registry auth file {path} is not readable JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise RegistryConfigError(f"registry auth file {path} is not a JSON object")
    keys = [host]
    if "localhost" in host:
        keys.append(host.replace("localhost", "127.0.0.1"))
    elif "127.0.0.1" in host:
        keys.append(host.replace("127.0.0.1", "localhost"))
    if host == _DOCKER_HUB:
        keys.extend(_DOCKER_HUB_KEYS)
    auths = cfg.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    for key in (*keys, *(f"{s}://{k}" for k in keys for s in ("https", "http"))):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, sep, password = (
                    base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError, TypeError):
                sep = ""
            if not sep:
                raise RegistryConfigError(
                    f"registry auth file {path}: auths.{key}.auth is not base64 of user:password"
                )
            return Credentials(user, password)
    helpers = cfg.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    for key in keys:
        helper = helpers.get(key) or cfg.get("credsStore")
        if isinstance(helper, str) and helper:
            found = _credential_helper(helper, key)
            if found:
                return found
    return None


# What a credential helper may need beyond airlock.spawn's allowlist: its
# user's session (pass/gpg, secretservice over D-Bus), the cloud SDKs the
# ecr/gcr/acr helpers call, and the proxy and CA settings they call through.
_HELPER_ENV_NAMES = ("USER", "LOGNAME", "DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "GNUPGHOME",
                     "GPG_AGENT_INFO", "GPG_TTY", "SSL_CERT_FILE", "SSL_CERT_DIR",
                     "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy",
                     "no_proxy")
_HELPER_ENV_PREFIXES = ("XDG_", "PASSWORD_STORE_", "DOCKER_", "AWS_", "AZURE_", "GOOGLE_",
                        "CLOUDSDK_")


def _credential_helper(name: str, key: str) -> Credentials | None:
    """Docker's credential-helper protocol: the server on stdin, JSON on stdout.

    The helper is looked up on ``PATH`` without its relative entries and runs
    in ``/`` with an allowlisted environment, so nothing in the directory the
    bundler was started from can stand in for it. Its output stays in a pipe
    (it carries a secret; it does not start daemons).
    """
    try:
        r = subprocess.run(
            [f"docker-credential-{name}", "get"],
            input=key.encode(),
            capture_output=True,
            timeout=60,
            check=True,
            cwd="/",
            env=child_env(names=_HELPER_ENV_NAMES, prefixes=_HELPER_ENV_PREFIXES),
            start_new_session=True,
        )
        got = json.loads(r.stdout)
        return Credentials(str(got["Username"]), str(got["Secret"]))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None  # no helper or no entry for this server: go on without credentials
