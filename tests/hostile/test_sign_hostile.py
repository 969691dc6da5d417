"""``airlock sign`` on every bad bundle of the corpus: a clean refusal, or a signature that changes no verdict.

A signer may be handed any bytes. Signing reads only the metadata, so for
each case either the bundle is refused as the reader refuses it (an
AirlockError, the file byte for byte as it was, no intent record left), or
a signature is added by a key the device does not trust and the device's
verdict on the bundle stays what it was: signing never turns a bad bundle
into a good one, nor a refusal into a crash.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from airlock.errors import AirlockError
from bundler.examine.verify import verify_bundle
from bundler.signing.sign import SigningSession
from bundler.signing.slot_rewrite import intent_path
from keys.trust import TrustRoot
from tests.hostile.cases import CASES, Case
from tests.support.kit import Kit


def _verdict(data: bytes, trust: TrustRoot, case: Case) -> int:
    try:
        verify_bundle(io.BytesIO(data), trust, ring=case.ring)
    except AirlockError as e:
        return e.exit_code
    return 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_signing_a_bad_bundle_changes_no_verdict(case: Case, kit: Kit, tmp_path: Path) -> None:
    bundle = case.write(kit, tmp_path)
    before = bundle.read_bytes()
    trust = TrustRoot.from_bytes(kit.trust_path.read_bytes())
    try:
        with SigningSession.open(bundle) as session:
            session.save([session.doc.sign(kit.rogue)])
    except AirlockError as e:
        assert e.exit_code in (2, 3), e
        assert bundle.read_bytes() == before
        assert not intent_path(bundle).exists()
        return
    assert not intent_path(bundle).exists()
    assert _verdict(bundle.read_bytes(), trust, case) == _verdict(before, trust, case)
