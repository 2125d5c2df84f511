"""What lambda_handler answers, in each front door's shape: verified, rejected, misconfigured, handler results."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import (
    CURRENT_KEY,
    DOORS,
    JSON_BODY,
    NEXT_KEY,
    assert_answer_shape,
    error_of,
    invoke,
    load_event,
    set_header,
    signed_event,
    token_for,
)

import lambda_function
from qstash_verify import Message, NonRetryableError, parse_lambda_event

pytestmark = pytest.mark.usefixtures("lambda_keys")


@pytest.mark.parametrize("name", DOORS)
def test_verified_delivery_runs_the_handler(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, log = invoke(signed_event(name), capsys)
    assert response["statusCode"] == 200, response
    message_id = parse_lambda_event(load_event(name)).headers["upstash-message-id"]
    assert json.loads(response["body"])["received"] == message_id
    assert log["outcome"] == "ok"
    assert log["status"] == 200
    assert_answer_shape(name, response)


@pytest.mark.parametrize("name", DOORS)
def test_next_key_delivery_is_accepted(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, _ = invoke(signed_event(name, key=NEXT_KEY), capsys)
    assert response["statusCode"] == 200


@pytest.mark.parametrize("name", DOORS)
def test_tampered_body_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = signed_event(name)
    if event.get("isBase64Encoded"):
        event["body"] = base64.b64encode(DOORS[name].body + b"!").decode()
    else:
        event["body"] = event["body"].replace("42", "43")
    response, log = invoke(event, capsys)
    assert (response["statusCode"], error_of(response)) == (401, "body_mismatch")
    assert (log["outcome"], log["reason"]) == ("rejected", "body_mismatch")
    assert_answer_shape(name, response)


@pytest.mark.parametrize("name", DOORS)
def test_token_for_another_url_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, log = invoke(signed_event(name, url="https://elsewhere.example.com/hook"), capsys)
    assert (response["statusCode"], error_of(response)) == (401, "url_mismatch")
    assert "https://elsewhere.example.com/hook" in log["detail"]


@pytest.mark.parametrize("name", DOORS)
def test_missing_signature_header_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(load_event(name), "upstash-signature", None)
    response, _ = invoke(event, capsys)
    assert (response["statusCode"], error_of(response)) == (401, "missing_signature")
    assert_answer_shape(name, response)


@pytest.mark.parametrize("missing", ["QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"])
def test_missing_keys_fail_closed_with_500(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(missing)
    called: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", called.append)
    response, log = invoke(signed_event("function_url"), capsys)
    assert response["statusCode"] == 500
    assert called == []
    assert log["outcome"] == "misconfigured"
    assert log["variable"] == missing
    assert missing in log["detail"]
    assert missing not in response["body"]


def test_handler_exception_answers_500_and_logs_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(message: Message) -> None:
        raise RuntimeError("database is down")

    monkeypatch.setattr(lambda_function, "handle", broken)
    response, log = invoke(signed_event("rest_api"), capsys)
    assert (response["statusCode"], error_of(response)) == (500, "internal_error")
    assert "database is down" not in response["body"]
    assert log["outcome"] == "handler_error"
    assert "RuntimeError: database is down" in log["traceback"]
    assert "broken" in log["traceback"]


@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb", "alb_multi_value"])
def test_non_retryable_error_answers_489(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(message: Message) -> None:
        raise NonRetryableError("unknown event type")

    monkeypatch.setattr(lambda_function, "handle", refuse)
    response, log = invoke(signed_event(name), capsys)
    assert response["statusCode"] == 489
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert json.loads(response["body"]) == {"error": "non_retryable", "message": "unknown event type"}
    assert log["outcome"] == "non_retryable"
    assert_answer_shape(name, response)


def test_message_gives_the_handler_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", seen.append)
    invoke(signed_event("rest_api"), capsys)
    (message,) = seen
    assert message.body == JSON_BODY
    assert message.text == JSON_BODY.decode()
    assert message.json() == {"event": "order.created", "id": 42}
    assert message.message_id == "msg_4"
    assert message.retried == 0
    assert message.headers["content-type"] == "application/json"
    assert message.claims.subject == DOORS["rest_api"].url
    assert message.url == DOORS["rest_api"].url


@pytest.mark.parametrize(
    ("retried", "expected"), [("0", 0), ("3", 3), (" 12 ", 12), ("", 0), ("-1", 0), ("x", 0), ("٣", 0), ("9" * 5000, 0)]
)
def test_retried_is_an_int(
    retried: str, expected: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", seen.append)
    invoke(set_header(signed_event("function_url"), "upstash-retried", retried), capsys)
    assert seen[0].retried == expected


REPLIES: list[tuple[Any, int, str, bool]] = [
    (None, 200, "", False),
    ("done", 200, "done", False),
    ({"ok": True}, 200, '{"ok": true}', False),
    ([1, 2], 200, "[1, 2]", False),
    ((202, "accepted"), 202, "accepted", False),
    ((204, None), 204, "", False),
    (b"\x00\xff", 200, base64.b64encode(b"\x00\xff").decode(), True),
]


@pytest.mark.parametrize(("reply", "status", "body", "is_base64"), REPLIES)
@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb", "alb_multi_value"])
def test_handler_replies_are_rendered(
    name: str,
    reply: Any,
    status: int,
    body: str,
    is_base64: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(lambda_function, "handle", lambda message: reply)
    response, log = invoke(signed_event(name), capsys)
    assert (response["statusCode"], response["body"], response["isBase64Encoded"]) == (status, body, is_base64)
    assert log["status"] == status
    assert_answer_shape(name, response)


def test_unserialisable_reply_is_a_handler_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lambda_function, "handle", lambda message: {"when": object()})
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], log["outcome"]) == (500, "handler_error")


def test_multi_region_picks_the_regions_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_REGION", "EU_CENTRAL_1")
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", "sig_us_current")
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", "sig_us_next")
    url, body = DOORS["function_url"][:2]  # its event carries upstash-region: US-EAST-1
    us_event = set_header(load_event("function_url"), "upstash-signature", token_for(url, body, "sig_us_next"))
    assert invoke(us_event, capsys)[0]["statusCode"] == 200
    eu_signed = set_header(load_event("function_url"), "upstash-signature", token_for(url, body, CURRENT_KEY))
    assert error_of(invoke(eu_signed, capsys)[0]) == "bad_signature"
    monkeypatch.delenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY")
    response, log = invoke(us_event, capsys)
    assert (response["statusCode"], log["variable"]) == (500, "US_EAST_1_QSTASH_NEXT_SIGNING_KEY")


def test_keys_are_read_once_per_container_and_reread_when_rotated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import qstash_verify

    built: list[bytes] = []
    original = qstash_verify._HmacSha256.__init__

    def counting(self: Any, key: bytes) -> None:
        built.append(key)
        original(self, key)

    monkeypatch.setattr(qstash_verify._HmacSha256, "__init__", counting)
    for _ in range(5):
        assert invoke(signed_event("function_url"), capsys)[0]["statusCode"] == 200
    assert len(built) <= 2  # both keys once, or not at all when an earlier test left these settings
    # Rotation: the next key becomes current, a new next key appears; no cold start needed.
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", NEXT_KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", "sig_rotated_in")
    assert error_of(invoke(signed_event("function_url"), capsys)[0]) == "bad_signature"
    assert invoke(signed_event("function_url", key="sig_rotated_in"), capsys)[0]["statusCode"] == 200
    assert invoke(signed_event("function_url", key=NEXT_KEY), capsys)[0]["statusCode"] == 200
    # One entry, the latest: nothing retained grows with traffic or rotations.
    assert dict(qstash_verify._LAMBDA.cached.values)["QSTASH_NEXT_SIGNING_KEY"] == "sig_rotated_in"


@pytest.mark.parametrize("region", ["attacker-was-here", "dev", "EU-CENTRAL-1x"])
def test_an_unknown_region_header_is_verified_with_the_primary_keys_not_a_500(
    region: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QSTASH_CURRENT_SIGNING_KEY")
    monkeypatch.delenv("QSTASH_NEXT_SIGNING_KEY")
    monkeypatch.setenv("QSTASH_REGION", "US_EAST_1")
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", "sig_us_current")
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", "sig_us_next")
    monkeypatch.setenv("DEV_QSTASH_CURRENT_SIGNING_KEY", "sig_public_dev")
    monkeypatch.setenv("DEV_QSTASH_NEXT_SIGNING_KEY", "sig_public_dev_next")
    url, body = DOORS["function_url"][:2]
    for key, status in (("sig_us_current", 200), ("sig_public_dev", 401), (CURRENT_KEY, 401)):
        event = set_header(load_event("function_url"), "upstash-signature", token_for(url, body, key))
        response, log = invoke(set_header(event, "upstash-region", region), capsys)
        assert response["statusCode"] == status, (key, log)
        assert log["variable"] is None


@pytest.mark.parametrize("name", DOORS)
def test_retry_later_answers_503_with_retry_after_in_every_doors_shape(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import response_headers

    from qstash_verify import RetryLater

    def later(message: Message) -> None:
        raise RetryLater(365)

    monkeypatch.setattr(lambda_function, "handle", later)
    response, log = invoke(signed_event(name), capsys)
    assert (response["statusCode"], error_of(response)) == (503, "retry_later")
    assert response_headers(response)["Retry-After"] == "365"
    assert (log["outcome"], log["status"]) == ("retry_later", 503)
    assert_answer_shape(name, response)


@pytest.mark.parametrize("name", DOORS)
def test_a_handler_sets_response_headers_in_every_doors_shape(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import response_headers

    monkeypatch.setattr(lambda_function, "handle", lambda message: (202, {"queued": 1}, {"Retry-After": "6m5s"}))
    response, _ = invoke(signed_event(name), capsys)
    headers = response_headers(response)
    assert (response["statusCode"], json.loads(response["body"])) == (202, {"queued": 1})
    assert (headers["Retry-After"], headers["content-type"]) == ("6m5s", "application/json")
    assert_answer_shape(name, response)


@pytest.mark.parametrize("headers", [{"X-A": "1\r\nSet-Cookie: x"}, {"X-A": 1}, ["X-A", "1"], {b"X-A": "1"}])
def test_response_headers_that_are_not_str_to_str_are_a_handler_error(
    headers: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lambda_function, "handle", lambda message: (200, "ok", headers))
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], log["outcome"]) == (500, "handler_error")
    assert "Set-Cookie" not in json.dumps(response)


def _cycle(message: Message) -> Any:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deep(message: Message) -> Any:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    "handle",
    [_cycle, _deep, lambda m: "ok \ud800", lambda m: {"v": float("inf")}, lambda m: (200, "x", {"content-length": "9"}),
     lambda m: (304, "body")],
    ids=["cycle", "deep", "lone surrogate", "infinity", "content-length", "304 with a body"],
)  # fmt: skip
@pytest.mark.usefixtures("lambda_keys")
def test_a_malformed_answer_never_escapes_the_lambda_handler(
    handle: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lambda_function, "handle", handle)
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], log["outcome"]) == (500, "handler_error")
    assert log["detail"].startswith("the handler's answer: ")


@pytest.mark.usefixtures("lambda_keys")
def test_the_settings_cache_shows_no_key_in_its_repr(capsys: pytest.CaptureFixture[str]) -> None:
    import qstash_verify

    invoke(signed_event("function_url"), capsys)
    text = repr(qstash_verify._LAMBDA.cached)
    assert "sig_test" not in text
    assert "variables" in text


def test_only_aws_function_url_domains_make_a_function_url_event() -> None:
    event = load_event("http_api_v2")
    event["requestContext"]["domainName"] = "hooks.lambda-url.example.com"  # a custom domain of an HTTP API
    assert parse_lambda_event(event).door == "http_api_v2"
