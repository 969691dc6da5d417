"""RegistryClient's retries and auth answers, against a scripted HTTP server on 127.0.0.1.

The server answers each request with the next entry of its script (the last
one repeats) and records what it was sent, so a test can say "503, 503, then
200" and count what arrived. Backoffs are hundredths of a second, so every
test here finishes in about a second or less.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from airlock.errors import RegistryError
from airlock.registry import RegistryClient, parse_ref
from airlock.registry_credentials import docker_credentials
from scripts import ocikit

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    },
    indent=3,  # odd spacing on purpose: the client must keep these bytes
).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    host: str
    script: list[Answer]
    seen: list[Seen] = field(default_factory=list)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0], 16)
            chunk = handler.rfile.read(size + 2)[:size]  # data and its CRLF
            if not size:
                return out
            out += chunk
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


@contextmanager
def serve(*script: Answer) -> Iterator[Server]:
    """A registry stand-in on 127.0.0.1 that answers from ``script``."""
    server = Server("", list(script))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = _read_body(self)
            with lock:
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                answer = server.script[min(len(server.seen), len(server.script)) - 1]
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        do_GET = do_HEAD = do_PUT = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.host = f"127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_outside_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither the user's docker credentials nor a proxy may take part.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


def _client(server: Server, **kw: float) -> RegistryClient:
    options = {"attempts": 4, "backoff": 0.01, "timeout": 5.0, **kw}
    return RegistryClient(None, [server.host], **options)  # type: ignore[arg-type]


def test_503_twice_then_200_is_retried() -> None:
    ok = Answer(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, MANIFEST)
    with serve(Answer(503), Answer(503), ok) as server:
        client = _client(server)
        got = client.get_manifest(parse_ref(f"{server.host}/site/app:1"))
    assert got.data == MANIFEST  # byte for byte
    assert [s.path for s in server.seen] == ["/v2/site/app/manifests/1"] * 3
    assert client.requests == 3  # the counter sees urllib3's retries too


def test_429_with_retry_after_zero_is_retried() -> None:
    with serve(Answer(429, {"Retry-After": "0"}), Answer(200, body=MANIFEST)) as server:
        client = _client(server)
        got = client.get_manifest(parse_ref(f"{server.host}/site/app:1"))
    assert got.data == MANIFEST and len(server.seen) == 2


def test_retry_after_is_waited_for() -> None:
    with serve(Answer(429, {"Retry-After": "1"}), Answer(200, body=MANIFEST)) as server:
        start = time.monotonic()
        _client(server, backoff=0).get_manifest(parse_ref(f"{server.host}/site/app:1"))
    assert 0.9 <= time.monotonic() - start < 10 and len(server.seen) == 2


def test_retry_after_is_capped() -> None:
    with serve(Answer(503, {"Retry-After": "3600"}), Answer(200, body=MANIFEST)) as server:
        start = time.monotonic()
        _client(server, retry_after_max=0.1).get_manifest(parse_ref(f"{server.host}/site/app:1"))
    assert time.monotonic() - start < 10 and len(server.seen) == 2


def test_lasting_503_is_one_line_naming_the_reference() -> None:
    error = {"errors": [{"code": "UNAVAILABLE", "message": "try later"}]}
    with serve(Answer(503, body=json.dumps(error).encode())) as server:
        ref = f"{server.host}/site/app:1"
        with pytest.raises(RegistryError) as e:
            _client(server, attempts=3).get_manifest(parse_ref(ref))
    assert len(server.seen) == 3
    message = str(e.value)
    assert message.startswith(ref) and "HTTP 503: UNAVAILABLE try later" in message
    assert "\n" not in message


def test_401_is_not_retried() -> None:
    challenge = Answer(401, {"Www-Authenticate": 'Basic realm="registry"'})
    with serve(challenge) as server, pytest.raises(RegistryError) as e:
        _client(server).get_manifest(parse_ref(f"{server.host}/site/app:1"))
    assert "access denied" in str(e.value) and "HTTP 401" in str(e.value)
    assert len(server.seen) == 1  # no credentials to answer with, and no retry


def test_connection_refused_fails_fast_after_all_attempts() -> None:
    host = f"127.0.0.1:{ocikit.free_port()}"  # nothing listens there
    client = RegistryClient(None, [host], attempts=3, backoff=0.01, timeout=5)
    start = time.monotonic()
    with pytest.raises(RegistryError) as e:
        client.get_manifest(parse_ref(f"{host}/app:1"))
    assert time.monotonic() - start < 10
    assert str(e.value).startswith(
        f"{host}/app:1: cannot reach registry {host}: connection refused (after 3 attempts)"
    )


def test_basic_challenge_is_answered_from_docker_config(tmp_path: Path) -> None:
    with serve(
        Answer(401, {"Www-Authenticate": 'Basic realm="registry"'}), Answer(200, body=MANIFEST)
    ) as server:
        token = base64.b64encode(b"alice:s3cret").decode()
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker/config.json").write_text(
            json.dumps({"auths": {server.host: {"auth": token}}})
        )
        client = _client(server)
        ref = parse_ref(f"{server.host}/site/app:1")
        client.get_manifest(ref)
        client.get_manifest(ref)
    assert [s.headers.get("Authorization") for s in server.seen] == [
        None,
        f"Basic {token}",
        f"Basic {token}",  # sent from then on without waiting to be asked
    ]


def test_file_upload_is_sent_again_whole(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"layer bytes " * 1000)
    with serve(Answer(503), Answer(201)) as server:
        client = _client(server)
        with blob.open("rb") as f:
            client.request(
                parse_ref(f"{server.host}/site/app:1"),
                "PUT",
                "blobs/uploads/1?digest=sha256:x",
                what="blob",
                ok=(201,),
                data=f,
            )
    assert [s.body for s in server.seen] == [blob.read_bytes()] * 2


def test_one_shot_upload_stream_is_not_retried() -> None:
    with serve(Answer(503), Answer(201)) as server:
        client = _client(server)
        ref = parse_ref(f"{server.host}/site/app:1")
        with pytest.raises(RegistryError, match="HTTP 503"):
            client.request(
                ref,
                "PUT",
                "blobs/uploads/1?digest=sha256:x",
                what="blob",
                ok=(201,),
                data=iter([b"once ", b"only"]),
            )
    assert [s.body for s in server.seen] == [b"once only"]


def test_docker_credentials_are_found_as_docker_finds_them(tmp_path: Path) -> None:
    def config(auths: dict[str, str]) -> Path:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"auths": {k: {"auth": v} for k, v in auths.items()}}))
        return path

    alice = base64.b64encode(b"alice:pa:ss").decode()  # the password may hold a colon
    hub = config({"https://index.docker.io/v1/": alice})  # where `docker login` puts Hub's
    assert docker_credentials("registry-1.docker.io", hub) == ("alice", "pa:ss")
    local = config({"localhost:5000": alice})
    assert docker_credentials("127.0.0.1:5000", local) == ("alice", "pa:ss")
    assert docker_credentials("other:5000", local) is None
    with pytest.raises(RegistryError, match="not base64 of user:password"):
        docker_credentials("bad:5000", config({"bad:5000": "no colon here"}))
