"""Make real OCI content without Docker, and run a real registry.

Used by the registry tests and by the registry section of scripts/bench.py::

    with Registry.start(tmp) as reg:
        layers = [random_layer(1 << 20, seed=1)]
        layout = write_image(tmp / "img", "app:1.0", layers)
        push(layout, "app:1.0", f"{reg.host}/app:1.0")            # skopeo copy
        push_model(reg.host, "models/det:1", [model, inputs, outputs])  # oras push

Layers are gzip tars of random bytes (``compresslevel=0`` keeps big ones
cheap to make); images are written as OCI layouts directly and copied to the
registry with ``skopeo copy``, which can also convert them to Docker
schema 2 (``fmt="v2s2"``) or push a whole multi-arch index (``--all``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    @contextmanager
    def start(
        cls, workdir: Path, htpasswd: Path | None = None, token: dict[str, str] | None = None
    ) -> Iterator[Registry]:
        """Debian's docker-registry on 127.0.0.1:<free port>, storage under ``workdir``.

        ``htpasswd`` turns on HTTP Basic auth; ``token`` (``TokenServer.registry_config``)
        the Docker token flow.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{port}"},
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "airlock-test", "path": str(htpasswd)}}
        if token is not None:
            config["auth"] = {"token": token}
        cfg = workdir / "config.yml"
        cfg.write_text(json.dumps(config))  # JSON is YAML
        log = workdir / "registry.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=out, stderr=out)
        reg = cls(f"127.0.0.1:{port}", proc, log)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break  # 401 from an auth registry: it is up
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"docker-registry did not start: {log.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.05)
            yield reg
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def blob_gets(self, settle: float = 0.3) -> int:
        """How many blob downloads the registry has served (from its access log).

        The registry logs a request after answering it, so a count read right
        after a pull can miss the last one: wait until it stops changing.
        """
        count = self._blob_gets()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(settle)
            again = self._blob_gets()
            if again == count:
                break
            count = again
        return count

    def _blob_gets(self) -> int:
        text = self.log.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if '"GET /v2/' in line and "/blobs/sha256:" in line
        )


@dataclass(frozen=True)
class Layer:
    data: bytes  # the gzip tar as stored
    diff_id: str  # sha256 of the uncompressed tar

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def random_layer(size: int, seed: int, name: str | None = None) -> Layer:
    """A gzip tar holding one file of ``size`` pseudo-random bytes (same seed, same layer)."""
    payload = _random_bytes(size, seed)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name or f"data/layer-{seed}.bin")
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return Layer(
        gzip.compress(tar_bytes, compresslevel=0, mtime=0),
        "sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
    )


#: A dpkg ``status`` file as Debian 12 writes it (three stanzas of a real one, one package
#: removed but its config kept: not installed, so not listed in an SBOM).
DPKG_STATUS = """\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 340
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u5
Replaces: base, dpkg (<= 1.15.0), miscutils
Provides: base
Conffiles:
 /etc/debian_version 1b0e5ad1fb0c9b9e1ec3b5e0b2bfc48a
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system, and
 several important miscellaneous files.

Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 168
Maintainer: Mark Brown <broonie@debian.org>
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Depends: libc6 (>= 2.14)
Description: compression library - runtime

Package: nano
Status: deinstall ok config-files
Priority: important
Section: editors
Installed-Size: 2776
Maintainer: Jordi Mallach <jordi@debian.org>
Architecture: amd64
Version: 7.2-1
Description: small, friendly text editor inspired by Pico
"""


def files_layer(files: dict[str, bytes]) -> Layer:
    """A gzip tar holding ``files`` (path -> bytes), e.g. ``{"var/lib/dpkg/status": …}``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return Layer(gzip.compress(tar_bytes, compresslevel=0, mtime=0),
                 "sha256:" + hashlib.sha256(tar_bytes).hexdigest())


def debian_layer() -> Layer:
    """A layer with a real dpkg ``status`` file and ``os-release``: a Debian 12 root in brief."""
    return files_layer({"var/lib/dpkg/status": DPKG_STATUS.encode(),
                        "etc/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'})


def _random_bytes(size: int, seed: int) -> bytes:
    # randbytes makes one integer of size*8 bits: past 256 MiB that overflows a C int,
    # so larger layers are drawn in pieces (sizes up to one piece are unchanged).
    rng, piece = random.Random(seed), 64 * 1024 * 1024
    if size <= piece:
        return rng.randbytes(size)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(min(piece, size - len(out)))
    return bytes(out)


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    (d / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _image_manifest(layout: Path, layers: Sequence[Layer], arch: str) -> dict[str, Any]:
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    cfg = _write_blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                **_write_blob(layout, layer.data),
            }
            for layer in layers
        ],
    }
    return {
        "mediaType": OCI_MANIFEST,
        **_write_blob(layout, json.dumps(manifest).encode()),
        "platform": {"architecture": arch, "os": "linux"},
    }


def _finish(layout: Path, tag: str, desc: dict[str, Any]) -> Path:
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    desc = {**desc, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return layout


def write_image(layout: Path, tag: str, layers: Sequence[Layer], arch: str = "amd64") -> Path:
    """An OCI layout at ``layout`` holding one image tagged ``tag``."""
    if layout.exists():
        shutil.rmtree(layout)
    return _finish(layout, tag, _image_manifest(layout, layers, arch))


def write_multiarch(layout: Path, tag: str, per_arch: dict[str, Sequence[Layer]]) -> Path:
    """An OCI layout whose ``tag`` is an image index with one manifest per architecture."""
    if layout.exists():
        shutil.rmtree(layout)
    manifests = [_image_manifest(layout, layers, arch) for arch, layers in per_arch.items()]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return _finish(
        layout, tag, {"mediaType": OCI_INDEX, **_write_blob(layout, json.dumps(index).encode())}
    )


def push(
    layout: Path,
    tag: str,
    dest: str,
    fmt: str | None = None,
    all_platforms: bool = False,
    creds: str | None = None,
) -> None:
    """``skopeo copy oci:LAYOUT:TAG docker://DEST`` over plain HTTP (``creds``: USER:PASSWORD)."""
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if creds:
        cmd += ["--dest-creds", creds]
    if fmt:
        cmd += ["--format", fmt]
    if all_platforms:
        cmd += ["--all"]
    subprocess.run(
        [*cmd, f"oci:{layout}:{tag}", f"docker://{dest}"], check=True, capture_output=True
    )


def push_model(host: str, repo_tag: str, files: Sequence[Path]) -> None:
    """``oras push`` with the oras Python SDK: one layer per file, titled by file name."""
    import oras.client

    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.push(
        target=f"{host}/{repo_tag}",
        files=[str(f) for f in files],
        disable_path_validation=True,
        quiet=True,
    )


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True)


class TokenServer:
    """A Docker token server (the Bearer flow of Docker Hub, GHCR, Harbor) on 127.0.0.1.

    Issues ES256 JWTs with an ``x5c`` header that docker-registry checks against
    ``rootcertbundle``. ``user:password`` may pull and push everything; anonymous
    callers may pull repositories under ``public/``.
    """

    SERVICE = "airlock-test"
    ISSUER = "airlock-test-issuer"

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airlock-test-token")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        workdir.mkdir(parents=True, exist_ok=True)
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.user, self.password = user, password
        self.port = free_port()
        self.requests: list[str] = []

    @property
    def registry_config(self) -> dict[str, str]:
        return {
            "realm": f"http://127.0.0.1:{self.port}/token",
            "service": self.SERVICE,
            "issuer": self.ISSUER,
            "rootcertbundle": str(self.bundle),
        }

    def _jwt(self, sub: str, access: list[dict[str, Any]]) -> str:
        import base64
        import uuid

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.ISSUER,
            "sub": sub,
            "aud": self.SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    @contextmanager
    def serve(self) -> Iterator[TokenServer]:
        import base64
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                who = "anonymous"
                if auth.startswith("Basic "):
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, pw) != (server_self.user, server_self.password):
                        self.send_response(401)
                        self.end_headers()
                        return
                    who = user
                server_self.requests.append(who)
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    allowed = (
                        actions.split(",")
                        if who != "anonymous"
                        else (["pull"] if repo.startswith("public/") and "pull" in actions else [])
                    )
                    access.append({"type": kind, "name": repo, "actions": allowed})
                token = server_self._jwt(who, access)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
