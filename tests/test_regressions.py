"""Regression guards, one per defect found in the seed snippet or the official SDK (issue #2, #3)."""

from __future__ import annotations

import json

import pytest
from conftest import BODY, CURRENT_KEY, NEXT_KEY, NOW, URL, body_hash, claims, mint, reason_of

import lambda_function
from qstash_verify import Reason, Receiver

RECEIVER = Receiver(CURRENT_KEY, NEXT_KEY)


def reason(token: str, body: object = BODY, url: str | None = URL, **kwargs: object) -> Reason:
    return reason_of(lambda: RECEIVER.verify(signature=token, body=body, url=url, now=NOW, **kwargs))  # type: ignore[arg-type]


def test_clock_tolerance_is_not_ignored() -> None:
    token = mint(claims(exp=NOW - 10))
    assert reason(token) is Reason.EXPIRED
    assert RECEIVER.verify(signature=token, body=BODY, url=URL, now=NOW, clock_tolerance=11).subject == URL


def test_bytes_and_binary_bodies_do_not_crash() -> None:
    binary = bytes(range(256))
    token = mint(claims(body=body_hash(binary)))
    assert RECEIVER.verify(signature=token, body=binary, url=URL, now=NOW).subject == URL


@pytest.mark.parametrize("changes", [{"body": ...}, {"body": 5}, {"sub": ...}, {"exp": ...}])
def test_missing_or_non_string_claims_are_signature_errors_not_key_errors(changes: dict[str, object]) -> None:
    assert reason(mint(claims(**changes))) is Reason.INVALID_CLAIMS


def test_failure_after_the_current_key_is_not_masked_by_the_next_key() -> None:
    assert reason(mint(claims(exp=NOW - 1), key=CURRENT_KEY)) is Reason.EXPIRED
    assert reason(mint(key=CURRENT_KEY), url=URL + "/other") is Reason.URL_MISMATCH


def test_empty_body_is_still_checked() -> None:
    assert reason(mint(claims(body=body_hash(b"not empty"))), body=b"") is Reason.BODY_MISMATCH


def test_missing_header_is_a_401_not_a_502(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", CURRENT_KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT_KEY)
    event = {"version": "2.0", "rawPath": "/", "headers": {"host": "h"}, "requestContext": {}, "body": "{}"}
    response = lambda_function.lambda_handler(event, None)
    assert (response["statusCode"], json.loads(response["body"])) == (401, {"error": "missing_signature"})


def test_missing_keys_are_a_500_naming_the_variable_not_a_key_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QSTASH_CURRENT_SIGNING_KEY", raising=False)
    monkeypatch.delenv("QSTASH_REGION", raising=False)
    event = {"version": "2.0", "rawPath": "/", "headers": {"host": "h"}, "requestContext": {}, "body": "{}"}
    assert lambda_function.lambda_handler(event, None)["statusCode"] == 500
    assert "QSTASH_CURRENT_SIGNING_KEY" in capsys.readouterr().out


def test_forged_request_gets_a_reason_code_not_the_exception_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", CURRENT_KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT_KEY)
    token = mint(claims(sub="https://h/"), key="forger")
    event = {"version": "2.0", "rawPath": "/", "headers": {"host": "h", "upstash-signature": token},
             "requestContext": {}, "body": json.dumps({"event": "order.created", "id": 42})}  # fmt: skip
    response = lambda_function.lambda_handler(event, None)
    assert (response["statusCode"], json.loads(response["body"])) == (401, {"error": "bad_signature"})


def test_unsigned_headers_say_so_wherever_they_are_offered() -> None:
    # Issue #8, 8: message_id and retried come from headers the signature does not cover.
    from conftest import ROOT

    from qstash_verify import Message

    for prop in (Message.message_id, Message.retried):
        assert "not signed" in (prop.__doc__ or "")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`message_id`, `retried` (both from unsigned headers)" in readme
    assert "`Upstash-Message-Id` (not signed" in readme
