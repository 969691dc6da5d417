"""Real OpenSSH servers on 127.0.0.1 for the push (and rollout) tests, as many as a test needs.

    need_sshd()                                   # skip (or, under CI=true, fail) without it
    with Sshd.start(tmp_path / "cam-7") as cam7, \
            Sshd.start(tmp_path / "cam-8", identity=cam7.identity) as cam8:
        known = tmp_path / "known_hosts"
        known.write_text(cam7.known_hosts_line() + cam8.known_hosts_line())
        run_airlock("fleet", "push", bundle, cam7.address, cam8.address, "--user", cam7.user,
                    "--identity", cam7.identity, "--known-hosts", known)
        cam7.drop_connections()                   # kill -9 its sessions: a copy breaks off

Each server is Debian's ``/usr/sbin/sshd -D`` with its own host key,
config, authorized_keys and pid file in its directory, listening on a free
loopback port; it logs in the current user (root under CI) with the
generated client key ``identity``, and serves SFTP (``internal-sftp``,
starting in the server's own ``home``) and, unless ``sftp_only``, commands. sshd refuses to run as anyone but root, hence the skip.
Given a network namespace (``netns=``, tests/support/netns.py) the server runs
inside it on the device's own address, port 22, as a separate host does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.ocikit import free_port
from tests.support.netns import DeviceNet

SSHD = "/usr/sbin/sshd"


def need_sshd() -> None:
    """Skip without sshd or root (it needs both); under ``CI=true`` fail instead."""
    why = None
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh-keygen"):
        why = "openssh-server not installed (apt-get install openssh-server)"
    elif os.geteuid() != 0:
        why = "sshd runs only as root"
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new OpenSSH key pair ``path`` / ``path.pub`` without a passphrase."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "airlock-test", "-f",
                    str(path)], check=True)
    return path


@dataclass
class Sshd:
    dir: Path
    port: int
    user: str
    identity: Path  # client private key allowed to log in
    host_key: Path  # the server's private host key (its .pub beside it)
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def home(self) -> Path:
        """Where SFTP sessions start: a relative ``--dest`` is under here."""
        return self.dir / "home"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this server: ``[HOST]:PORT``, or ``HOST`` on port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def known_hosts_line(self, host_pub: Path | None = None) -> str:
        """This server's known_hosts entry (``[127.0.0.1]:PORT type key``), or one for another key."""
        kind, key = (host_pub or self.host_key.with_suffix(".pub")).read_text().split()[:2]
        return f"{self.known_hosts_name} {kind} {key}\n"

    def drop_connections(self) -> int:
        """Kill -9 every session process of this server (a cable pulled mid-copy); how many."""
        killed = 0
        for pid in _descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    @classmethod
    @contextmanager
    def start(cls, directory: Path, identity: Path | None = None,
              sftp_only: bool = False, netns: DeviceNet | None = None) -> Iterator[Sshd]:
        """An sshd on a free loopback port (or ``netns``'s address, port 22); ``identity``
        (default: a new key) may log in.

        SFTP sessions start in ``DIR/home`` (the device's own "home", so a relative
        ``--dest`` differs per server); ``sftp_only`` forces every session to SFTP, like
        an account without a shell.
        """
        need_sshd()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "home").mkdir(exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation dir
        host_key = keygen(directory / "ssh_host_ed25519_key")
        identity = identity or keygen(directory / "client_key")
        (directory / "authorized_keys").write_text(identity.with_suffix(".pub").read_text())
        host, port = (netns.address, 22) if netns else ("127.0.0.1", free_port())
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host}",
            f"Port {port}",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"PidFile {directory / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            f"Subsystem sftp internal-sftp -d {directory / 'home'}",
            *([f"ForceCommand internal-sftp -d {directory / 'home'}"] if sftp_only else []),
            "LogLevel ERROR",
            "",
        ]))
        log = (directory / "sshd.log").open("wb")
        inside = ["ip", "netns", "exec", netns.name] if netns else []  # execs sshd: same pid
        proc = subprocess.Popen([*inside, SSHD, "-D", "-e", "-f", str(config)], stdout=log,
                                stderr=subprocess.STDOUT)
        server = cls(directory, port, _user(), identity, host_key, proc, host)
        try:
            _wait_for_banner(host, port, proc, directory / "sshd.log")
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _wait_for_banner(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
