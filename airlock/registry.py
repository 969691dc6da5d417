"""One OCI registry client for both sides, built on oras-py's ``Registry``.

The bundler pulls with it (``bundler.build.pull``) and the agent's ``registry``
image sink pushes with it; it lives beside the bundle format because both
packages use it and neither may import the other. ``oras`` (and with it
``requests``) is imported when a client is made, so the agent installs and
runs without it unless a site chooses the registry sink.

A pull, start to finish::

    client = RegistryClient(auth=None, insecure=["127.0.0.1:5000"])
    ref = parse_ref("127.0.0.1:5000/app:1.0")   # Docker's naming rules
    got = client.get_manifest(ref)              # bytes exactly as served, and their media type
    for layer in got.json()["layers"]:          # an image manifest; an index lists manifests
        dest = Path("/tmp/blobs") / layer["digest"][7:]
        client.download_blob(ref, layer["digest"], layer["size"], dest)  # hashed, then renamed

What happens underneath:

1. The first call for a host makes one oras ``Registry`` for it (plain HTTP
   for hosts listed in ``insecure``) and mounts a ``requests``
   ``HTTPAdapter`` whose ``max_retries`` is a urllib3 ``Retry`` on that
   registry's session, so every request to the host, oras's token requests
   included, is retried the same way. Credentials for the host are read
   from a Docker ``config.json`` (``airlock.registry_credentials``) and handed to
   oras's token backend with its public ``set_basic_auth``.
2. Each request goes out with the bearer token oras already holds, if any.
   A refused connection, a timeout, 408, 429 or a 5xx is sent again by
   urllib3: right away, then after ``backoff`` x 2, x 4 … seconds, or after
   the ``Retry-After`` the registry asked for (at most ``retry_after_max``).
3. A 401 (or 403) with a ``Bearer`` challenge goes to oras's token backend
   (``authenticate_request``), which fetches a token, anonymously or with
   the credentials; a ``Basic`` challenge is answered with the credentials
   themselves (``requests.auth.HTTPBasicAuth``), and that host gets them on
   every later request. Either way the request is sent once more; a second
   401 is the answer.
4. Whatever status is left at the end that the caller did not expect
   becomes one :class:`RegistryError` line naming the reference.

What this adds on top of oras-py 0.2.x (each checked by tests/registry, against a
real registry where a scripted HTTP server would not do):

* manifests are kept byte for byte with their media type (from the manifest
  or the response's Content-Type), Docker schema 2 manifests and manifest
  lists included; oras parses and re-serialises them and accepts only OCI;
* blob downloads hash while they write and refuse a wrong digest or size;
* a registry that asks for HTTP Basic (htpasswd) gets it: oras's token
  backend would otherwise try to fetch a token from the realm text;
* credentials are looked up the way ``docker pull`` does (``$DOCKER_CONFIG``
  honoured, ``docker login``'s Docker Hub key understood); oras reads only
  ``~/.docker/config.json`` plus the files it is given;
* retries with a short exponential backoff on connection errors, 408, 429
  and 5xx, through urllib3's ``Retry`` on oras's session instead of oras's
  ``do_request``, whose fixed retry sleeps for minutes on a refused
  connection and also retries answers that cannot change (401); a request
  body that can only be read once is sent once;
* errors are one ``RegistryError`` line naming the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airlock.errors import (
    DigestError,
    RegistryConfigError,
    RegistryError,
    RegistryUnavailableError,
)
from airlock.files import PartialFile
from airlock.format.oci import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    is_digest,
)
from airlock.limits import CHUNK
from airlock.registry_credentials import docker_credentials

if TYPE_CHECKING:
    import requests
    import requests.auth
    from urllib3.util.retry import Retry

__all__ = ["Manifest", "Ref", "RegistryClient", "parse_ref"]

_ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
# Every method this client sends; urllib3's default list leaves out POST,
# which starts a blob upload (a repeated POST only opens another upload).
_RETRIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT"})


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``registry/repository`` plus a tag or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    text: str = ""  # as the user wrote it, for messages and ref.name annotations

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_registry(self, registry: str, prefix: str = "") -> Ref:
        repo = f"{prefix.strip('/')}/{self.repository}" if prefix.strip("/") else self.repository
        name = f"{registry}/{repo}"
        text = (
            f"{name}@{self.digest}"
            if self.digest and not self.tag
            else f"{name}:{self.tag or 'latest'}"
        )
        return Ref(registry, repo, self.tag, self.digest, text)

    def __str__(self) -> str:
        return self.text


def parse_ref(text: str) -> Ref:
    """Parse ``[oci://|docker://]HOST[:PORT]/REPO[:TAG][@sha256:…]`` the way Docker does.

    A name without a registry host means Docker Hub (``library/`` for
    official images), like ``docker pull``.
    """
    raw = text
    for scheme in ("oci://", "docker://"):
        if raw.startswith(scheme):
            raw = raw[len(scheme) :]
    import oras.container

    try:
        c = oras.container.Container(raw)
    except ValueError:
        raise RegistryConfigError(f"{text}: not an image reference like HOST/REPO:TAG") from None
    registry = c.registry
    repo = f"{c.namespace}/{c.repository}" if c.namespace else c.repository
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        registry = "registry-1.docker.io"
        if "/" not in repo:
            repo = "library/" + repo
    # oras fills in "latest" even for NAME@DIGEST; keep only a tag the user wrote.
    tag = c.tag if not c.digest or ":" in raw.split("@")[0].rsplit("/", 1)[-1] else None
    if c.digest is not None and not is_digest(c.digest):
        raise RegistryConfigError(f"{text}: the digest must be sha256:<64 hex digits>")
    if not re.fullmatch(
        r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", repo
    ):
        raise RegistryConfigError(
            f"{text}: repository {repo!r} is not a valid name (lower case, digits, . _ -)"
        )
    return Ref(registry, repo, tag, c.digest, raw)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry served it."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _oras_registry() -> type[Any]:
    try:
        import oras.provider
    except ImportError:
        raise RegistryUnavailableError(
            "registry access needs the oras package: pip install 'airlock-edge[registry]' "
            "(the [bundler] extra includes it)"
        ) from None
    registry: type[Any] = oras.provider.Registry
    return registry


def _retry_policy(attempts: int, backoff: float, retry_after_max: float) -> Retry:
    """urllib3's ``Retry`` for ``attempts`` tries in all; see the module docstring."""
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        # urllib3 >= 2.6.3 has retry_after_max, but caps only at hours and older
        # releases not at all; get_retry_after is its public hook for the wait.
        def get_retry_after(self, response: Any) -> float | None:
            after = super().get_retry_after(response)
            return None if after is None else min(after, retry_after_max)

    return _Retry(
        total=attempts - 1,
        other=0,  # TLS failures and the like: a second try says the same
        backoff_factor=backoff,
        status_forcelist=_TRANSIENT,
        allowed_methods=_RETRIED_METHODS,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back; request() words the error
    )


@dataclass
class _Host:
    """What the client keeps per registry host, around oras's ``Registry``."""

    oras: Any  # oras.provider.Registry: its session (with our retries) and token backend
    basic: requests.auth.HTTPBasicAuth | None  # from config.json, sent once asked for Basic
    basic_on: bool = False
    once: requests.Session | None = None  # without retries, for bodies readable only once


class RegistryClient:
    """Talks to any number of registries; one oras ``Registry`` per host.

    ``attempts`` is how often a request is tried in all; ``backoff`` is
    urllib3's ``backoff_factor`` (the third try waits ``2 * backoff``
    seconds, the fourth ``4 * backoff``); a registry's ``Retry-After`` is
    waited instead, up to ``retry_after_max`` seconds.
    """

    def __init__(
        self,
        auth: Path | None = None,
        insecure: Sequence[str] = (),
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        retry_after_max: float = 30.0,
    ) -> None:
        if auth is not None and not auth.is_file():
            raise RegistryConfigError(f"registry auth file {auth} does not exist")
        self.auth, self.insecure = auth, {h.strip() for h in insecure}
        self.attempts, self.backoff, self.timeout = max(1, attempts), backoff, timeout
        self.retry_after_max = retry_after_max
        self._hosts: dict[str, _Host] = {}
        # HTTP requests sent, retries included: tests and benchmarks see a cache at work.
        self.requests = 0

    # -- plumbing --------------------------------------------------------

    def _host(self, ref: Ref) -> _Host:
        host = self._hosts.get(ref.registry)
        if host is None:
            import requests
            import requests.adapters
            import requests.auth

            reg = _oras_registry()(
                hostname=ref.registry, insecure=ref.registry in self.insecure, tls_verify=True
            )
            retries = _retry_policy(self.attempts, self.backoff, self.retry_after_max)
            adapter = requests.adapters.HTTPAdapter(max_retries=retries)
            reg.session.mount("https://", adapter)
            reg.session.mount("http://", adapter)
            basic = None
            creds = docker_credentials(ref.registry, self.auth)
            if creds is not None:
                reg.auth.set_basic_auth(creds.user, creds.password)  # for token requests
                # HTTPBasicAuth takes bytes as they are; str would be encoded as Latin-1.
                basic = requests.auth.HTTPBasicAuth(creds.user.encode(), creds.password.encode())
            host = self._hosts[ref.registry] = _Host(reg, basic)
        return host

    def _url(self, ref: Ref, path: str) -> str:
        scheme = "http" if ref.registry in self.insecure else "https"
        return f"{scheme}://{ref.registry}/v2/{ref.repository}/{path}"

    def _send(
        self, host: _Host, method: str, url: str, headers: dict[str, str], kw: dict[str, Any]
    ) -> requests.Response:
        h = dict(headers)
        auth = host.basic if host.basic_on else None
        if auth is None:
            h.update(host.oras.auth.get_auth_header())  # the bearer token, once there is one
        session = host.oras.session
        if _unrepeatable(kw):
            import requests

            # Retries are a property of the session's adapter, so a body that
            # cannot be rewound goes through a session without them.
            session = host.once = host.once or requests.Session()
        r: requests.Response = session.request(
            method, url, headers=h, auth=auth, timeout=self.timeout, **kw
        )
        history = getattr(getattr(r.raw, "retries", None), "history", ())
        self.requests += 1 + len(history)
        return r

    def _authed(
        self, host: _Host, method: str, url: str, headers: dict[str, str], kw: dict[str, Any]
    ) -> requests.Response:
        start = _body_position(kw)
        r = self._send(host, method, url, headers, kw)
        if r.status_code not in (401, 403) or _unrepeatable(kw):
            return r
        challenge = r.headers.get("Www-Authenticate", "").lower()
        if challenge.startswith("basic"):
            if host.basic is None or host.basic_on:
                return r
            host.basic_on = True
        elif challenge.startswith("bearer"):
            # oras's token flow: anonymous, or with the config's credentials.
            try:
                _, changed = host.oras.auth.authenticate_request(r, dict(headers), refresh=True)
            except Exception:
                changed = False
            if not changed:
                return r
        else:
            return r
        r.close()
        if start is not None:
            kw["data"].seek(start)
        return self._send(host, method, url, headers, kw)

    def request(
        self,
        ref: Ref,
        method: str,
        path: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        url: str | None = None,
        **kw: Any,
    ) -> requests.Response:
        """One registry call with auth, retries and an error that names ``ref``.

        ``kw`` goes to ``requests`` (``data``, ``stream``). Returns the
        response when its status is in ``ok``; raises :class:`RegistryError`
        otherwise.
        """
        import requests

        host = self._host(ref)
        try:
            r = self._authed(host, method, url or self._url(ref, path), headers or {}, kw)
        except requests.exceptions.SSLError as e:
            raise RegistryUnavailableError(
                f"{ref}: TLS failed talking to {ref.registry} ({_short(e)}); "
                f"for a plain-HTTP registry pass --insecure {ref.registry}"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            tries = 1 if _unrepeatable(kw) else self.attempts
            why = "connection refused" if "refused" in str(e).lower() else _short(e)
            raise RegistryUnavailableError(
                f"{ref}: cannot reach registry {ref.registry}: {why} "
                f"(after {tries} attempt{'s' if tries > 1 else ''}); "
                "is it running and is the address right?"
            ) from None
        if r.status_code in ok:
            return r
        with r:
            raise _status_error(ref, r, what)

    # -- reading ---------------------------------------------------------

    def get_manifest(self, ref: Ref, reference: str | None = None) -> Manifest:
        """The manifest or index for ``reference`` (default: the ref's tag or digest)."""
        want = reference or ref.reference
        r = self.request(
            ref, "GET", f"manifests/{want}", what="manifest", headers={"Accept": _ACCEPT}
        )
        return self._manifest(ref, want, r)

    def find_manifest(self, ref: Ref, reference: str) -> Manifest | None:
        """:meth:`get_manifest`, or None when the registry has no such tag (404).

        For tags that may well not exist: a cosign signature's ``sha256-<hex>.sig``.
        """
        r = self.request(ref, "GET", f"manifests/{reference}", what="manifest",
                         headers={"Accept": _ACCEPT}, ok=(200, 404))
        if r.status_code == 404:
            r.close()
            return None
        return self._manifest(ref, reference, r)

    def _manifest(self, ref: Ref, want: str, r: requests.Response) -> Manifest:
        data = r.content
        digest = digest_of(data)
        if is_digest(want) and digest != want:
            raise DigestError(f"{ref}: registry served manifest {digest}, not the {want} asked for")
        try:
            body = json.loads(data)
        except ValueError:
            raise RegistryError(f"{ref}: the registry's manifest is not JSON") from None
        if not isinstance(body, dict):
            raise RegistryError(f"{ref}: the registry's manifest is not a JSON object")
        media_type = (
            body.get("mediaType") or r.headers.get("Content-Type", "").split(";")[0].strip()
        )
        if body.get("schemaVersion") == 1 or "prettyjws" in media_type:
            raise RegistryError(
                f"{ref}: Docker schema 1 manifests are not supported; re-push the image"
            )
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            # OCI manifests may omit mediaType; tell them apart by shape.
            media_type = OCI_INDEX if "manifests" in body else OCI_MANIFEST
        return Manifest(data, media_type, digest)

    def download_blob(
        self,
        ref: Ref,
        digest: str,
        size: int,
        dest: Path,
        tick: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob to ``dest``, hashing as it writes; a wrong digest or size is an error.

        Writes ``dest`` only complete and verified (temp file + rename).
        """
        if not is_digest(digest):
            raise DigestError(f"{ref}: not a sha256 digest: {digest[:80]!r}")
        with PartialFile(dest, parents=True) as partial:  # airlock.files: exclusive, beside dest
            r = self.request(ref, "GET", f"blobs/{digest}", what=f"blob {digest[:19]}", stream=True)
            h, got = hashlib.sha256(), 0
            with r:
                for chunk in r.iter_content(CHUNK):
                    got += len(chunk)
                    if got > size:
                        raise DigestError(
                            f"{ref}: blob {digest} is larger than the {size} bytes its manifest says"
                        )
                    h.update(chunk)
                    partial.file.write(chunk)
                    if tick:
                        tick(len(chunk))
            if got != size or "sha256:" + h.hexdigest() != digest:
                raise DigestError(
                    f"{ref}: blob {digest} arrived as {got} bytes with sha256:{h.hexdigest()}; "
                    f"expected {size} bytes"
                )
            partial.publish()

    # -- writing (the agent's registry sink) -----------------------------

    def blob_exists(self, ref: Ref, digest: str) -> bool:
        r = self.request(ref, "HEAD", f"blobs/{digest}", what=f"blob {digest[:19]}", ok=(200, 404))
        return r.status_code == 200

    def upload_blob(
        self, ref: Ref, digest: str, size: int, open_blob: Callable[[], IO[bytes]]
    ) -> None:
        """Monolithic upload (POST then PUT), streamed from ``open_blob()``."""
        if self.blob_exists(ref, digest):
            return
        r = self.request(
            ref,
            "POST",
            "blobs/uploads/",
            what="upload",
            ok=(201, 202),
            headers={"Content-Length": "0"},
        )
        location = r.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{ref}: registry gave no upload location")
        if location.startswith("/"):
            scheme = "http" if ref.registry in self.insecure else "https"
            location = f"{scheme}://{ref.registry}{location}"
        sep = "&" if "?" in location else "?"
        with open_blob() as f:
            self.request(
                ref,
                "PUT",
                "",
                what=f"blob {digest[:19]}",
                ok=(201, 204),
                url=f"{location}{sep}digest={digest}",
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                data=f,
            )

    def put_manifest(
        self, ref: Ref, data: bytes, media_type: str, reference: str | None = None
    ) -> str:
        """Store manifest bytes unchanged under ``reference`` (default: the ref's tag)."""
        self.request(
            ref,
            "PUT",
            f"manifests/{reference or ref.reference}",
            what="manifest",
            ok=(200, 201, 202),
            headers={"Content-Type": media_type},
            data=data,
        )
        return digest_of(data)


def _short(e: BaseException) -> str:
    text = str(e)
    m = re.search(r"\[Errno -?\d+\] ([^')]+)", text)
    return m.group(1) if m else text[:160]


def _status_error(ref: Ref, r: requests.Response, what: str) -> RegistryError:
    code = r.status_code
    detail = ""
    try:
        errors = r.json().get("errors") or []
        if errors and isinstance(errors[0], dict):
            detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
    except Exception:
        pass
    if code in (401, 403):
        return RegistryUnavailableError(
            f"{ref}: access denied by {ref.registry} (HTTP {code}{detail}); "
            f"log in with 'docker login {ref.registry}' or pass --registry-auth CONFIG.json"
        )
    if code == 404:
        return RegistryUnavailableError(
            f"{ref}: {what} not found on {ref.registry} (HTTP 404{detail}); check the name and tag"
        )
    if code >= 500 or code == 429:  # the registry's trouble, not the content's
        return RegistryUnavailableError(
            f"{ref}: {what}: registry {ref.registry} answered HTTP {code}{detail}; try again later")
    return RegistryError(f"{ref}: {what}: registry {ref.registry} answered HTTP {code}{detail}")


def _unrepeatable(kw: dict[str, Any]) -> bool:
    """A request body that is a one-shot stream (a pipe, a generator) cannot be sent again."""
    data = kw.get("data")
    if data is None or isinstance(data, bytes | bytearray | str | dict):
        return False
    seekable = getattr(data, "seekable", None)
    return not (callable(seekable) and seekable())


def _body_position(kw: dict[str, Any]) -> int | None:
    """Where a file body starts, to rewind it for a second send (urllib3 does so for retries)."""
    data = kw.get("data")
    if data is None or isinstance(data, bytes | bytearray | str | dict) or _unrepeatable(kw):
        return None
    position: int = data.tell()
    return position
