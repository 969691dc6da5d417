"""SSH connections to site devices, with strict host-key checking (paramiko).

The one way the host side reaches a device: ``airlock fleet push`` and
``airlock fleet rollout`` use it, and :func:`run` is the one way they run a
command there (its output bounded by ``MAX_REMOTE_OUTPUT_BYTES``)::

    target = Target.parse("10.0.4.7:2222")
    with connect(target, Login("airlock", Path("id_ed25519"), Path("known_hosts"))) as client:
        status, out, err = run(client, "sha256sum -- vision.airlock", timeout=60)

Host keys are checked against the ``known_hosts`` file the caller names
(OpenSSH's format, ``[host]:port`` for ports other than 22), never the
user's own: an unknown host is refused unless ``accept_new`` (then its key
is recorded, like OpenSSH's ``StrictHostKeyChecking accept-new``); a key
that differs from the recorded one is always refused. Both errors are one
line naming the host and the SHA256 fingerprint it offered, exit 3.
Authentication is by the given private key only (no ~/.ssh keys), so what a
command does never depends on who runs it; a login without a key file (a site
inventory host with no ``ansible_ssh_private_key_file``) uses the keys of the
running SSH agent instead.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from airlock.errors import HostKeyError, UnreachableError, UsageError
from airlock.limits import MAX_REMOTE_OUTPUT_BYTES

__all__ = ["Login", "Target", "connect", "fingerprint", "run"]

# paramiko logs a dropped connection ("Socket exception: …") at ERROR; with no handler
# Python would print it to stderr beside our own one-line error.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_TARGET = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?\Z")


@dataclass(frozen=True)
class Target:
    """A device's address: ``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``."""

    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> Target:
        m = _TARGET.match(text)
        port = int(m.group("port")) if m and m.group("port") else 22
        if m is None or not 0 < port < 65536:
            raise UsageError(f"{text!r} is not HOST, HOST:PORT or [IPv6]:PORT")
        return cls(m.group("v6") or m.group("host"), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 22 else f"{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name this target in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Login:
    """Who logs in, with which key, trusting which host keys."""

    user: str
    identity: Path | None  # None: the SSH agent's keys
    known_hosts: Path
    accept_new: bool = False
    timeout: float = 15.0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: ``SHA256:`` and the unpadded base64 of the key blob's sha256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown host: refuse, or record it when the caller accepts new hosts."""

    login: Login
    recorded: list[str] = field(default_factory=list)

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if not self.login.accept_new:
            raise HostKeyError(
                f"host {hostname} is not in {self.login.known_hosts} (it offers "
                f"{key.get_name()} {fingerprint(key)}); check that fingerprint on the device "
                "and rerun with --accept-new-hosts to record it")
        client.get_host_keys().add(hostname, key.get_name(), key)
        client.save_host_keys(str(self.login.known_hosts))
        self.recorded.append(f"{hostname} {key.get_name()} {fingerprint(key)}")


@contextmanager
def connect(target: Target, login: Login,
            recorded: list[str] | None = None) -> Iterator[paramiko.SSHClient]:
    """An authenticated SSH client to ``target``; closed on exit.

    With ``login.accept_new``, a host key seen for the first time is written
    to known_hosts and described in ``recorded``.
    """
    if not login.known_hosts.exists():
        if not login.accept_new:
            raise UsageError(f"known hosts file {login.known_hosts} does not exist; create it "
                             "(ssh-keyscan, checked) or pass --accept-new-hosts")
        login.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        login.known_hosts.touch(mode=0o600)
    if login.identity is not None and not login.identity.is_file():
        raise UsageError(f"identity {login.identity} is not a readable private key file")
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(login.known_hosts))
    except (OSError, paramiko.SSHException) as e:
        raise UsageError(f"cannot read known hosts file {login.known_hosts}: {e}") from None
    policy = _Policy(login, recorded if recorded is not None else [])
    client.set_missing_host_key_policy(policy)
    try:
        client.connect(
            target.host, port=target.port, username=login.user,
            key_filename=str(login.identity) if login.identity else None,
            allow_agent=login.identity is None, look_for_keys=False,
            timeout=login.timeout, banner_timeout=login.timeout, auth_timeout=login.timeout,
        )
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostKeyError(
            f"host key of {target.known_hosts_name} changed: it offers {e.key.get_name()} "
            f"{fingerprint(e.key)}, {login.known_hosts} has {fingerprint(e.expected_key)}; "
            "refusing (a reinstalled device or a machine in the middle: check, then edit "
            "known_hosts)") from None
    except paramiko.AuthenticationException:
        client.close()
        raise UsageError(f"{login.user}@{target} refused the key "
                         f"{login.identity or '(from the SSH agent)'}; check the user and "
                         "key") from None
    except HostKeyError:
        client.close()
        raise
    except (OSError, paramiko.SSHException, EOFError) as e:
        client.close()
        raise UnreachableError(f"cannot reach {target}: {e or type(e).__name__}") from None
    try:
        yield client
    finally:
        client.close()


def run(client: paramiko.SSHClient, command: str, timeout: float = 600.0,
        what: str = "a command") -> tuple[int, bytes, bytes]:
    """Run ``command`` on the device: its exit status and (bounded) stdout and stderr.

    Each stream is cut at ``MAX_REMOTE_OUTPUT_BYTES``. No answer within
    ``timeout`` seconds, or a lost connection, is an UnreachableError (exit 5)
    naming ``what`` ran. The status is -1 when the server sent none (an
    SFTP-only account ends the session without one); the caller decides.
    """
    try:
        stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        # Nothing to say on stdin: an SFTP-only account (ForceCommand internal-sftp) then ends
        # its session at once instead of waiting for SFTP requests.
        stdin.channel.shutdown_write()
        out = stdout.read(MAX_REMOTE_OUTPUT_BYTES)
        err = stderr.read(MAX_REMOTE_OUTPUT_BYTES)
        return stdout.channel.recv_exit_status(), out, err
    except TimeoutError:
        raise UnreachableError(f"no answer within {timeout:.0f} s") from None
    except (OSError, paramiko.SSHException, EOFError) as e:
        raise UnreachableError(f"connection lost while running {what}: {e}") from None
