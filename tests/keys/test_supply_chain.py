"""The signed ``supply_chain`` section is read as strictly as the rest of a release."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airlock.errors import FormatError
from airlock.format.bundle import FileInfo
from keys.release import Release
from keys.supply_chain import Carried, SupplyChain, Verified

D = "sha256:" + "a" * 64
K = "sha256:" + "b" * 64


def _release(sc: SupplyChain) -> Release:
    return Release(name="site", version="1", sequence=1,
                   expires=datetime.now(timezone.utc) + timedelta(days=3),
                   files={f"blobs/sha256/{'a' * 64}": FileInfo(10, "a" * 64)}, supply_chain=sc)


def _good() -> SupplyChain:
    return SupplyChain(True, {K: "MFkwEwYHKoZIzj0CAQ"}, [Verified("reg/app:1", D, K)],
                       [Carried("signature", D, "reg/app:1", D, tag="sha256-aaa.sig",
                                verified_with=K)])


def test_the_section_round_trips_through_signed_bytes() -> None:
    again = Release.from_bytes(_release(_good()).to_metadata().to_bytes())
    assert again.supply_chain == _good()


def test_a_release_without_the_section_keeps_its_bytes() -> None:
    plain = Release(name="site", version="1", sequence=1,
                    expires=datetime.now(timezone.utc) + timedelta(days=3))
    assert b"supply_chain" not in plain.to_metadata().to_bytes()


@pytest.mark.parametrize(("change", "words"), [
    (lambda b: b["evidence"][0].update(kind="rumour"), "kind' must be one of"),
    (lambda b: b["evidence"][0].update(manifest="sha256:" + "c" * 64), "not in the bundle"),
    (lambda b: b["verified"][0].update(key="sha256:" + "d" * 64), "that its 'keys' do not hold"),
    (lambda b: b.update(require_signatures="yes"), "must be true or false"),
    (lambda b: b["keys"].update({K: "two\nlines"}), "supply_chain.keys"),
])
def test_a_malformed_section_is_refused(change: Any, words: str) -> None:
    md = _release(_good()).to_metadata()
    change(md.signed.unrecognized_fields["airlock"]["supply_chain"])
    with pytest.raises(FormatError, match=words):
        Release.from_bytes(md.to_bytes())
