"""One OCI registry client for both sides, built on oras-py's ``Registry``.

The bundler pulls with it (``bundler.pull``) and the agent's ``registry``
image sink pushes with it; it lives beside the bundle format because both
packages use it and neither may import the other. ``oras`` is imported when a
client is made, so the agent installs and runs without it unless a site
chooses the registry sink::

    client = RegistryClient(auth=None, insecure=["127.0.0.1:5000"])
    ref = parse_ref("127.0.0.1:5000/app:1.0")
    got = client.get_manifest(ref)                  # bytes exactly as served
    client.download_blob(ref, desc_digest, size, Path("/tmp/blob"))   # verified

What this adds on top of oras-py 0.2.x (each checked against a real registry):

* manifests are kept byte for byte with their media type (from the manifest
  or the response's Content-Type), Docker schema 2 manifests and manifest
  lists included; oras parses and re-serialises them and accepts only OCI;
* blob downloads hash while they write and refuse a wrong digest or size;
* a registry that asks for HTTP Basic (htpasswd) gets it: oras's token
  backend would otherwise try to fetch a token from the realm text;
* retries with a short exponential backoff on connection errors, 429 and
  5xx, instead of oras's fixed retry that sleeps for minutes on a refused
  connection and also retries answers that cannot change (401);
* errors are one ``RegistryError`` line naming the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airlock.errors import DigestError, RegistryError
from airlock.limits import CHUNK
from airlock.oci import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, digest_of, is_digest

if TYPE_CHECKING:
    import requests

__all__ = ["Manifest", "Ref", "RegistryClient", "parse_ref"]

_ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
_TRANSIENT = {408, 429, 500, 502, 503, 504}


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
        raise RegistryError(f"{text}: not an image reference like HOST/REPO:TAG") from None
    registry = c.registry
    repo = f"{c.namespace}/{c.repository}" if c.namespace else c.repository
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        registry = "registry-1.docker.io"
        if "/" not in repo:
            repo = "library/" + repo
    # oras fills in "latest" even for NAME@DIGEST; keep only a tag the user wrote.
    tag = c.tag if not c.digest or ":" in raw.split("@")[0].rsplit("/", 1)[-1] else None
    if c.digest is not None and not is_digest(c.digest):
        raise RegistryError(f"{text}: the digest must be sha256:<64 hex digits>")
    if not re.fullmatch(
        r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", repo
    ):
        raise RegistryError(
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
        raise RegistryError(
            "registry access needs the oras package: pip install 'airlock-edge[bundler]' "
            "(or 'pip install oras' on a device using the registry image sink)"
        ) from None
    registry: type[Any] = oras.provider.Registry
    return registry


class RegistryClient:
    """Talks to any number of registries; one oras ``Registry`` per host."""

    def __init__(
        self,
        auth: Path | None = None,
        insecure: Sequence[str] = (),
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
    ) -> None:
        if auth is not None and not auth.is_file():
            raise RegistryError(f"registry auth file {auth} does not exist")
        self.auth, self.insecure = auth, {h.strip() for h in insecure}
        self.attempts, self.backoff, self.timeout = max(1, attempts), backoff, timeout
        self._hosts: dict[str, Any] = {}
        self.requests = 0  # counted so tests and benchmarks can see a cache at work

    # -- plumbing --------------------------------------------------------

    def _registry(self, ref: Ref) -> Any:
        reg = self._hosts.get(ref.registry)
        if reg is None:
            base = _oras_registry()
            reg = base(hostname=ref.registry, insecure=ref.registry in self.insecure)
            # oras reads ~/.docker/config.json (and DOCKER_CONFIG) plus ours.
            reg.auth.load_configs(
                reg.get_container(f"{ref.registry}/{ref.repository}"),
                configs=[str(self.auth)] if self.auth else None,
            )
            reg._airlock_basic = False
            self._hosts[ref.registry] = reg
        return reg

    def _url(self, ref: Ref, path: str) -> str:
        scheme = "http" if ref.registry in self.insecure else "https"
        return f"{scheme}://{ref.registry}/v2/{ref.repository}/{path}"

    def _send(
        self, reg: Any, method: str, url: str, headers: dict[str, str], **kw: Any
    ) -> requests.Response:
        h = dict(headers)
        if reg._airlock_basic:
            h["Authorization"] = "Basic " + reg.auth._basic_auth
        elif getattr(reg.auth, "token", None):
            h.update(reg.auth.get_auth_header())
        self.requests += 1
        r: requests.Response = reg.session.request(
            method, url, headers=h, verify=reg._tls_verify, timeout=self.timeout, **kw
        )
        return r

    def _authed(
        self, reg: Any, method: str, url: str, headers: dict[str, str], **kw: Any
    ) -> requests.Response:
        r = self._send(reg, method, url, headers, **kw)
        if r.status_code not in (401, 403):
            return r
        challenge = r.headers.get("Www-Authenticate", "")
        basic = getattr(reg.auth, "_basic_auth", None)
        if challenge.lower().startswith("basic"):
            if not basic or reg._airlock_basic:
                return r
            reg._airlock_basic = True
        elif challenge.lower().startswith("bearer"):
            # oras's token flow: anonymous or with the config's credentials.
            reg.auth.token = None
            try:
                _, changed = reg.auth.authenticate_request(r, dict(headers))
            except Exception:
                changed = False
            if not changed:
                return r
        else:
            return r
        r.close()
        if "data" in kw and hasattr(kw["data"], "seek"):
            kw["data"].seek(0)
        return self._send(reg, method, url, headers, **kw)

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
        """One registry call with auth, retries and an error that names ``ref``."""
        import requests

        reg = self._registry(ref)
        target = url or self._url(ref, path)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                r = self._authed(reg, method, target, headers or {}, **kw)
            except requests.exceptions.SSLError as e:
                raise RegistryError(
                    f"{ref}: TLS failed talking to {ref.registry} ({_short(e)}); "
                    f"for a plain-HTTP registry pass --insecure {ref.registry}"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
                if last or _unrepeatable(kw):
                    refused = "refused" in str(e).lower()
                    why = "connection refused" if refused else _short(e)
                    raise RegistryError(
                        f"{ref}: cannot reach registry {ref.registry}: {why} "
                        f"(after {attempt} attempts); is it running and is the address right?"
                    ) from None
            else:
                if r.status_code in ok:
                    return r
                if r.status_code not in _TRANSIENT or last:
                    raise _status_error(ref, r, what)
                r.close()
            if "data" in kw and hasattr(kw["data"], "seek"):
                kw["data"].seek(0)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    # -- reading ---------------------------------------------------------

    def get_manifest(self, ref: Ref, reference: str | None = None) -> Manifest:
        """The manifest or index for ``reference`` (default: the ref's tag or digest)."""
        want = reference or ref.reference
        r = self.request(
            ref, "GET", f"manifests/{want}", what="manifest", headers={"Accept": _ACCEPT}
        )
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
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
        try:
            r = self.request(ref, "GET", f"blobs/{digest}", what=f"blob {digest[:19]}", stream=True)
            h, got = hashlib.sha256(), 0
            with r, tmp.open("wb") as out:
                for chunk in r.iter_content(CHUNK):
                    got += len(chunk)
                    if got > size:
                        raise DigestError(
                            f"{ref}: blob {digest} is larger than the {size} bytes its manifest says"
                        )
                    h.update(chunk)
                    out.write(chunk)
                    if tick:
                        tick(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if got != size or "sha256:" + h.hexdigest() != digest:
                raise DigestError(
                    f"{ref}: blob {digest} arrived as {got} bytes with sha256:{h.hexdigest()}; "
                    f"expected {size} bytes"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

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
        return RegistryError(
            f"{ref}: access denied by {ref.registry} (HTTP {code}{detail}); "
            f"log in with 'docker login {ref.registry}' or pass --registry-auth CONFIG.json"
        )
    if code == 404:
        return RegistryError(
            f"{ref}: {what} not found on {ref.registry} (HTTP 404{detail}); check the name and tag"
        )
    return RegistryError(f"{ref}: {what}: registry {ref.registry} answered HTTP {code}{detail}")


def _unrepeatable(kw: dict[str, Any]) -> bool:
    """A request body that was a one-shot stream cannot be sent again."""
    data = kw.get("data")
    return data is not None and not isinstance(data, bytes) and not hasattr(data, "seek")
