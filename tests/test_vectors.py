"""Every known-answer vector from tests/qstash-signatures.json (cross-checked with PyJWT and the official SDK)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from conftest import load_vectors

from qstash_verify import Reason, Receiver, SignatureError

VECTORS = load_vectors()
# The vectors' failure kinds, mapped to this project's reason codes.
KINDS = {
    "signature": Reason.BAD_SIGNATURE,
    "body": Reason.BODY_MISMATCH,
    "url": Reason.URL_MISMATCH,
    "expired": Reason.EXPIRED,
    "not_yet_valid": Reason.NOT_YET_VALID,
    "issuer": Reason.WRONG_ISSUER,
    "claims": Reason.INVALID_CLAIMS,
    "algorithm": Reason.WRONG_ALGORITHM,
    "malformed": Reason.MALFORMED_TOKEN,
}
# After every vector's iat and before the not-yet-valid one's nbf; the expired one's exp is long past.
NOW = 1_764_374_400 + 60
RECEIVER = Receiver(VECTORS["current_signing_key"], VECTORS["next_signing_key"])


def test_every_expectation_is_known() -> None:
    assert {v["expect"] for v in VECTORS["vectors"]} <= {"ok", *KINDS}
    assert len(VECTORS["vectors"]) >= 20


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_vector(vector: dict[str, Any]) -> None:
    body = base64.b64decode(vector["body_b64"])
    if vector["expect"] == "ok":
        claims = RECEIVER.verify(signature=vector["token"], body=body, url=vector["url"], now=NOW)
        assert claims.subject.rstrip("/") == vector["url"].rstrip("/")
    else:
        with pytest.raises(SignatureError) as caught:
            RECEIVER.verify(signature=vector["token"], body=body, url=vector["url"], now=NOW)
        assert caught.value.reason is KINDS[vector["expect"]]


def accepted_by(key: str, vector: dict[str, Any]) -> bool:
    try:
        Receiver(key).verify(
            signature=vector["token"], body=base64.b64decode(vector["body_b64"]), url=vector["url"], now=NOW
        )
    except SignatureError as err:
        assert err.reason is Reason.BAD_SIGNATURE
        return False
    return True


@pytest.mark.parametrize("vector", [v for v in VECTORS["vectors"] if v["expect"] == "ok"], ids=lambda v: v["name"])
def test_valid_vectors_verify_with_exactly_one_of_the_keys(vector: dict[str, Any]) -> None:
    matches = [accepted_by(VECTORS[k], vector) for k in ("current_signing_key", "next_signing_key")]
    assert matches.count(True) == 1
    assert not accepted_by("sig_unrelated", vector)
