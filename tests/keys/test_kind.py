"""A bundle's kind is signed and read once (keys/metadata.py); a release's ``requires`` gates
what an agent installs (keys/features.py).

The kind used to be guessed from the bytes (``b"airlock_flags"`` present and
``b'"airlock"'`` absent), so a flags set named ``airlock``, or holding the
value ``"airlock"``, was taken for a release and refused. Metadata signed
before the field existed keeps working: its kind is the section it carries.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from airlock.errors import FormatError, RejectedError, UsageError
from keys.features import KNOWN_FEATURES, UnknownFeatureError
from keys.flags import FlagSet, sign_flags, verify_flags
from keys.keyfile import generate_keypair, load_public_key, load_signer
from keys.metadata import KIND_FIELD, Kind, ReleaseSerializer, bundle_kind, kind_of
from keys.release import Release
from keys.trust import TrustRoot, create_root

WHEN = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrustRoot, Any]:
    d = tmp_path_factory.mktemp("keys")
    root_key, _ = generate_keypair("root", d)
    release_key, release_pub = generate_keypair("release", d)
    trust = TrustRoot(create_root([load_signer(root_key)], [load_public_key(release_pub)]))
    return trust, load_signer(release_key)


def _sign(md: Metadata[Any], signer: Any) -> bytes:
    md.sign(signer, signed_serializer=ReleaseSerializer())
    return md.to_bytes()


def _release(**kw: Any) -> Release:
    return Release(name="vision", version="1.0", sequence=1, expires=WHEN, **kw)


@pytest.mark.parametrize("flags", [
    FlagSet("airlock", {"night_mode": True}, sequence=1, expires=WHEN),
    FlagSet("site", {"mode": "airlock"}, sequence=1, expires=WHEN),
    FlagSet("site", {"airlock": True}, sequence=1, expires=WHEN),
], ids=["named-airlock", "value-airlock", "flag-named-airlock"])
def test_a_flags_set_that_says_airlock_is_still_a_flags_set(
        flags: FlagSet, keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    data = sign_flags(flags, [signer])
    assert b'"airlock"' in data  # what the old byte sniffing took for a release
    assert bundle_kind(data) is Kind.FLAGS and bundle_kind(data).is_flags()
    got, role = verify_flags(trust, data, ring=None)
    assert got.name == flags.name and got.flags == flags.flags and role == "release"
    with pytest.raises(FormatError, match="flags set, not a release"):
        trust.verify_release(data)


def test_releases_and_flags_sign_their_kind(keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    release = _sign(_release().to_metadata(), signer)
    assert Metadata.from_bytes(release).signed.unrecognized_fields[KIND_FIELD] == "release"
    assert bundle_kind(release).is_release() and not bundle_kind(release).is_flags()
    assert trust.verify_release(release).release.requires == ()
    flags = sign_flags(FlagSet("site", {"a": 1}, sequence=1, expires=WHEN), [signer])
    assert Metadata.from_bytes(flags).signed.unrecognized_fields[KIND_FIELD] == "flags"


def test_metadata_signed_before_the_kind_field_is_read_by_its_section(
        keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    md = _release().to_metadata()
    del md.signed.unrecognized_fields[KIND_FIELD]
    del md.signed.unrecognized_fields["airlock"]["requires"]
    old_release = _sign(md, signer)
    assert kind_of(Metadata.from_bytes(old_release)) is Kind.RELEASE
    assert trust.verify_release(old_release).release.name == "vision"

    flags = Metadata.from_bytes(
        sign_flags(FlagSet("airlock", {"x": "airlock"}, sequence=2, expires=WHEN), [signer]))
    del flags.signed.unrecognized_fields[KIND_FIELD]
    flags.signatures.clear()
    old_flags = _sign(flags, signer)
    assert bundle_kind(old_flags) is Kind.FLAGS
    assert verify_flags(trust, old_flags, ring=None)[0].sequence == 2


@pytest.mark.parametrize(("kind", "error"), [
    ("chunked", "of kind 'chunked', which this version of Airlock does not know"),
    ("flags", "says it is a flags but carries the section of another kind"),
    (["release"], "does not know"),
])
def test_a_kind_unknown_or_at_odds_with_the_body_is_refused(
        kind: Any, error: str, keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    md = _release().to_metadata()
    md.signed.unrecognized_fields[KIND_FIELD] = kind
    data = _sign(md, signer)
    with pytest.raises(FormatError, match=error) as e:
        trust.verify_release(data)
    assert e.value.exit_code == 3
    with pytest.raises(FormatError, match=error):
        bundle_kind(data)


def test_both_sections_at_once_is_neither_kind(keys: tuple[TrustRoot, Any]) -> None:
    md = _release().to_metadata()
    del md.signed.unrecognized_fields[KIND_FIELD]
    md.signed.unrecognized_fields["airlock_flags"] = {"name": "site", "flags": {"a": 1}}
    with pytest.raises(FormatError, match="both"):
        kind_of(md)


def test_unparseable_metadata_reads_as_a_release_whose_check_names_the_problem(
        keys: tuple[TrustRoot, Any]) -> None:
    assert bundle_kind(b"not json") is Kind.RELEASE
    with pytest.raises(FormatError, match="release metadata is not valid TUF metadata"):
        keys[0].verify_release(b"not json")


def test_an_agent_refuses_a_release_requiring_a_feature_it_does_not_know(
        keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    data = _sign(_release(requires=("chunks",)).to_metadata(), signer)
    with pytest.raises(UnknownFeatureError, match="requires feature 'chunks'") as e:
        trust.verify_release(data)
    assert isinstance(e.value, RejectedError) and e.value.exit_code == 3
    assert e.value.feature == "chunks"


def test_a_release_requiring_known_features_is_taken_in_signed_order(
        keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    wanted = tuple(sorted(KNOWN_FEATURES, reverse=True))
    data = _sign(_release(requires=wanted).to_metadata(), signer)
    assert trust.verify_release(data).release.requires == wanted


@pytest.mark.parametrize("requires", [["ok\x1b[2J"], "delta", [1]])
def test_a_malformed_requires_is_refused(requires: Any, keys: tuple[TrustRoot, Any]) -> None:
    trust, signer = keys
    md = _release().to_metadata()
    md.signed.unrecognized_fields["airlock"]["requires"] = requires
    with pytest.raises(FormatError, match=r"airlock\.requires"):
        trust.verify_release(_sign(md, signer))


def test_the_bundler_refuses_to_sign_a_requires_no_agent_knows(tmp_path: Path) -> None:
    from bundler.build.assemble import _sign as sign_release

    key, _ = generate_keypair("release", tmp_path)
    with pytest.raises(UsageError, match="'chunks' is required but is no feature"):
        sign_release(_release(requires=("chunks",)), [load_signer(key)])
    release_json, keyids = sign_release(_release(requires=("delta",)), [load_signer(key)])
    assert Release.from_bytes(release_json).requires == ("delta",) and keyids
