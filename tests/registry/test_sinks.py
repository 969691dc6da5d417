"""Agent image sinks fed from a real bundle: oci-dir, registry, command."""

from __future__ import annotations

import json
import sys
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent.sinks import make_sink
from airlock.errors import DeliveryError, UsageError
from keys.release import Release
from scripts import ocikit
from tests.support.keyset import Keys
from tests.support.registry import Content, build_from
from tests.support.spec import write_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(
    content: Content, keyset: Keys, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Release, Callable[[str], Path]]:
    """A release with three images (one Docker schema 2, one from an index), blobs on disk."""
    from tuf.api.metadata import Metadata

    d = tmp_path_factory.mktemp("sinkstore")
    spec = write_spec(d, name="s", version="1", models=[],
                      images=[content.app, content.worker,
                              {"ref": content.multi, "platform": "linux/arm64"}])
    out = d / "s.airlock"
    build_from(content.host, keyset, spec, out, d / "cache")
    with tarfile.open(out) as tar:
        tar.extractall(d / "x", filter="data")
    release = Release.from_metadata(
        Metadata.from_bytes((d / "x/airlock/release.json").read_bytes())
    )
    return release, lambda digest: d / "x/blobs/sha256" / digest[7:]


def test_oci_dir_is_importable_idempotent_and_keeps_old_releases(
    store: tuple[Release, Callable[[str], Path]], content: Content, tmp_path: Path
) -> None:
    release, blob_path = store
    images = tmp_path / "images"
    sink = make_sink({}, images)
    sink.deliver(release, blob_path)
    r = ocikit.skopeo("inspect", f"oci:{images}:{content.app}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == release.images[0].manifest
    before = (images / "index.json").read_bytes()
    sink.deliver(release, blob_path)
    assert (images / "index.json").read_bytes() == before
    # A later release moving app:1.0 to another manifest keeps the old one pinned.
    worker = release.images[1]
    moved = replace(release, sequence=2, images=[replace(worker, ref=content.app)])
    sink.deliver(moved, blob_path)
    index = json.loads((images / "index.json").read_text())
    names = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert names[content.app] == worker.manifest
    app_repo = content.app.rsplit(":", 1)[0]
    assert names[f"{app_repo}@{release.images[0].manifest}"] == release.images[0].manifest
    for digest in [release.images[0].manifest, *release.images[0].blobs]:
        assert (images / "blobs/sha256" / digest[7:]).is_file()
    arm = json.loads(ocikit.skopeo("inspect", f"oci:{images}:{content.multi}").stdout)
    assert arm["Architecture"] == "arm64"


def test_registry_sink_pushes_byte_for_byte(
    store: tuple[Release, Callable[[str], Path]], content: Content, tmp_path: Path
) -> None:
    release, blob_path = store
    sink = make_sink(
        {"type": "registry", "registry": content.host, "insecure": True, "prefix": "site-mirror"},
        tmp_path,
    )
    sink.deliver(release, blob_path)
    sink.deliver(release, blob_path)  # idempotent
    for image in release.images:
        pushed = image.ref.replace(content.host, f"{content.host}/site-mirror", 1)
        raw = ocikit.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{pushed}")
        assert raw.returncode == 0, raw.stderr
        assert raw.stdout.encode() == blob_path(image.manifest).read_bytes()


def test_registry_sink_unreachable_is_a_failed_delivery(
    store: tuple[Release, Callable[[str], Path]], tmp_path: Path
) -> None:
    release, blob_path = store
    host = f"127.0.0.1:{ocikit.free_port()}"
    sink = make_sink(
        {"type": "registry", "registry": host, "insecure": "true", "attempts": "1"}, tmp_path
    )
    with pytest.raises(DeliveryError, match="connection refused") as e:
        sink.deliver(release, blob_path)
    assert e.value.exit_code == 4 and host in str(e.value)


def test_registry_sink_without_oras_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "oras.provider", None)  # import fails as on a bare device
    with pytest.raises(UsageError, match=r"pip install 'airlock-edge\[registry\]'"):
        make_sink({"type": "registry", "registry": "r:5000"}, tmp_path)


def test_command_sink_hands_an_oci_archive(
    store: tuple[Release, Callable[[str], Path]], content: Content, tmp_path: Path
) -> None:
    release, blob_path = store
    dest = tmp_path / "imported"
    sink = make_sink(
        {
            "type": "command",
            "command": f"skopeo copy --quiet oci-archive:{{archive}} oci:{dest}:{{ref}}",
        },
        tmp_path / "images",
    )
    sink.deliver(release, blob_path)
    for image in release.images:
        if image.media_type.startswith("application/vnd.oci"):  # skopeo 1.9: OCI entries only
            r = ocikit.skopeo("inspect", "--raw", f"oci:{dest}:{image.ref}")
            assert r.returncode == 0, r.stderr
            assert r.stdout.encode() == blob_path(image.manifest).read_bytes()
    assert list((tmp_path / "images" / ".tmp").iterdir()) == []  # temp archives removed


def test_command_sink_failure_names_command_and_image(
    store: tuple[Release, Callable[[str], Path]], tmp_path: Path
) -> None:
    release, blob_path = store
    sink = make_sink(
        {"type": "command", "command": "sh -c 'echo no space left >&2; exit 3'"}, tmp_path
    )
    with pytest.raises(DeliveryError, match=r"exited 3 for .*: no space left") as e:
        sink.deliver(release, blob_path)
    assert e.value.exit_code == 4


@pytest.mark.parametrize(
    "config, message",
    [
        ({"type": "tape"}, "unknown"),
        ({"type": "oci-dir", "dir": "/x"}, "unknown setting"),
        ({"type": "registry"}, "needs 'registry'"),
        ({"type": "command"}, "needs 'command'"),
        ({"type": "command", "command": "ctr import {archve}"}, "placeholders"),
    ],
)
def test_bad_sink_config_is_a_usage_error(
    config: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=message):
        make_sink(config, tmp_path)
