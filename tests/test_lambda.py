"""lambda_function.lambda_handler behind every front door, with events written after AWS's documented examples."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import CURRENT_KEY, NEXT_KEY, body_hash, claims, mint

import lambda_function
from qstash_verify import EventError, Message, NonRetryableError, parse_lambda_event

EVENTS = Path(__file__).parent / "events"
JSON_BODY = b'{"event":"order.created","id":42}'
# Fixture name -> (public URL QStash was given, raw body bytes), by AWS's documented rules.
DOORS = {
    "function_url": (
        "https://xyz789abcdefghijklmn.lambda-url.us-east-1.on.aws/api/qstash?tenant=7&kind=daily",
        JSON_BODY,
    ),
    "http_api_v2": (
        "https://r3pmxmplak.execute-api.us-east-2.amazonaws.com/prod/hooks/order%20created?a=1&b=x%20y",
        JSON_BODY,
    ),
    "http_api_v1": ("https://id.execute-api.us-east-1.amazonaws.com/default/hooks?job=nightly", JSON_BODY),
    "rest_api": (
        "https://1234567890.execute-api.us-east-1.amazonaws.com/prod/hooks/qstash?tenant=7&tag=a%20b",
        JSON_BODY,
    ),
    "alb": ("http://internal-lambda-alb.example.com/hooks/qstash%20in?name=me%20too&id=9", JSON_BODY),
    "alb_multi_value": (
        "https://hooks.example.com/hooks/qstash?tag=a&tag=b&id=9",
        bytes([0, 1, 2, 3, 254, 253, 252, 255]),
    ),
}
REST_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QSTASH_REGION", "QSTASH_URL", "QSTASH_CLOCK_TOLERANCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", CURRENT_KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT_KEY)


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def token_for(url: str, body: bytes, key: str = CURRENT_KEY) -> str:
    now = int(time.time())
    return mint(claims(sub=url, body=body_hash(body), iat=now, exp=now + 300), key=key)


def set_header(event: dict[str, Any], name: str, value: str | None) -> dict[str, Any]:
    """Set (or with None remove) a header the way this event shape carries it, in its name case."""
    event = copy.deepcopy(event)
    for field, wrap in (("headers", lambda v: v), ("multiValueHeaders", lambda v: [v])):
        headers = event.get(field)
        if isinstance(headers, dict):
            if any(k != k.lower() for k in headers):
                name = "-".join(part.capitalize() for part in name.split("-"))
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            if value is not None:
                headers[name] = wrap(value)
    return event


def signed(name: str, *, url: str | None = None, key: str = CURRENT_KEY) -> dict[str, Any]:
    public_url, body = DOORS[name]
    return set_header(load(name), "upstash-signature", token_for(url or public_url, body, key))


def invoke(event: Any, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    response = lambda_function.lambda_handler(event, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return response, json.loads(lines[0])


def assert_front_door_shape(event: Any, response: dict[str, Any]) -> None:
    assert type(response["statusCode"]) is int
    assert isinstance(response["body"], str)
    assert isinstance(response["isBase64Encoded"], bool)
    is_alb = isinstance(event, dict) and "elb" in event.get("requestContext", {})
    if is_alb and "multiValueHeaders" in event:
        assert "headers" not in response
        assert all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in response["multiValueHeaders"].values()
        )
    else:
        assert "multiValueHeaders" not in response
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in response["headers"].items())
    if is_alb:
        phrases = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
                   489: "Non-Retryable Error", 500: "Internal Server Error"}  # fmt: skip
        assert response["statusDescription"] == f"{response['statusCode']} {phrases[response['statusCode']]}"
    else:
        assert "statusDescription" not in response
    if isinstance(event, dict) and "httpMethod" in event and not is_alb:
        assert set(response) <= REST_KEYS


def error_of(response: dict[str, Any]) -> str:
    return json.loads(response["body"])["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", DOORS)
def test_event_adapter_rebuilds_the_public_url_and_raw_body(name: str) -> None:
    request = parse_lambda_event(load(name))
    assert request.url == DOORS[name][0]
    assert request.body == DOORS[name][1]
    assert request.method == "POST"
    assert all(k == k.lower() for k in request.headers)


@pytest.mark.parametrize("name", DOORS)
def test_verified_delivery_runs_the_handler(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, log = invoke(signed(name), capsys)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["received"] == parse_lambda_event(load(name)).headers["upstash-message-id"]
    assert log["outcome"] == "ok"
    assert log["status"] == 200
    assert_front_door_shape(load(name), response)


@pytest.mark.parametrize("name", DOORS)
def test_next_key_delivery_is_accepted(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, _ = invoke(signed(name, key=NEXT_KEY), capsys)
    assert response["statusCode"] == 200


@pytest.mark.parametrize("name", DOORS)
def test_tampered_body_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = signed(name)
    if event.get("isBase64Encoded"):
        event["body"] = base64.b64encode(DOORS[name][1] + b"!").decode()
    else:
        event["body"] = event["body"].replace("42", "43")
    response, log = invoke(event, capsys)
    assert (response["statusCode"], error_of(response)) == (401, "body_mismatch")
    assert (log["outcome"], log["reason"]) == ("rejected", "body_mismatch")
    assert_front_door_shape(event, response)


@pytest.mark.parametrize("name", DOORS)
def test_token_for_another_url_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    response, log = invoke(signed(name, url="https://elsewhere.example.com/hook"), capsys)
    assert (response["statusCode"], error_of(response)) == (401, "url_mismatch")
    assert "https://elsewhere.example.com/hook" in log["detail"]


@pytest.mark.parametrize("name", DOORS)
def test_missing_signature_header_is_rejected(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(load(name), "upstash-signature", None)
    response, _ = invoke(event, capsys)
    assert (response["statusCode"], error_of(response)) == (401, "missing_signature")
    assert_front_door_shape(event, response)


@pytest.mark.parametrize("name", [n for n in DOORS if not load(n).get("isBase64Encoded")])
def test_base64_encoded_text_body_is_decoded(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = signed(name)
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb"])
def test_base64_binary_body_is_verified_byte_for_byte(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = bytes(range(256)) * 4
    event = set_header(load(name), "upstash-signature", token_for(DOORS[name][0], binary))
    event.update(body=base64.b64encode(binary).decode(), isBase64Encoded=True)
    received: list[bytes] = []
    monkeypatch.setattr(lambda_function, "handle", lambda message: received.append(message.body))
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200
    assert received == [binary]


@pytest.mark.parametrize("body", [None, ""])
@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb"])
def test_absent_or_null_body_is_the_empty_body(name: str, body: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(load(name), "upstash-signature", token_for(DOORS[name][0], b""))
    if body is None:
        del event["body"]
    else:
        event["body"] = body
    assert parse_lambda_event(event).body == b""
    response, log = invoke(event, capsys)
    assert (response["statusCode"], log["outcome"]) == (200, "ok")


def test_header_lookup_is_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    event = signed("rest_api")
    for field in ("headers", "multiValueHeaders"):
        event[field]["UPSTASH-SIGNATURE"] = event[field].pop("Upstash-Signature")
        event[field]["HOST"] = event[field].pop("Host")
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_rest_api_with_only_single_value_headers(capsys: pytest.CaptureFixture[str]) -> None:
    event = signed("rest_api")
    del event["multiValueHeaders"], event["multiValueQueryStringParameters"]
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_host_falls_back_to_the_domain_name(capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(signed("function_url"), "host", None)
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_qstash_url_overrides_the_rebuilt_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = "https://api.example.com/v1/hooks/qstash?tenant=7&tag=a%20b"
    event = signed("rest_api", url=custom)
    response, _ = invoke(event, capsys)
    assert error_of(response) == "url_mismatch"
    monkeypatch.setenv("QSTASH_URL", custom)
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_clock_tolerance_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    url, body = DOORS["function_url"]
    token = mint(claims(sub=url, body=body_hash(body), iat=now - 300, exp=now - 5))
    event = set_header(load("function_url"), "upstash-signature", token)
    assert error_of(invoke(event, capsys)[0]) == "expired"
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "30")
    assert invoke(event, capsys)[0]["statusCode"] == 200
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "soon")
    response, log = invoke(event, capsys)
    assert (response["statusCode"], log["variable"]) == (500, "QSTASH_CLOCK_TOLERANCE")


NOT_HTTP = [
    ("console test event", load("console_test")),
    ("null", None),
    ("list", [1, 2]),
    ("string", "hello"),
    ("empty object", {}),
    ("request context only", {"requestContext": {}}),
    ("sqs record", {"Records": [{"eventSource": "aws:sqs", "body": "x"}]}),
    ("body not a string", {**load("function_url"), "body": {"a": 1}}),
    ("headers not an object", {**load("function_url"), "headers": ["host"]}),
    ("header value not a string", {**load("function_url"), "headers": {"host": 5}}),
    ("bad base64 body", {**load("function_url"), "isBase64Encoded": True, "body": "not base64!"}),
    ("no host at all", {**load("alb"), "headers": {}}),
    ("rawPath not a string", {**load("function_url"), "rawPath": 7}),
    ("query not an object", {**load("alb"), "queryStringParameters": "a=1"}),
    ("lone surrogate in the path", {**load("function_url"), "rawPath": "/\ud800"}),
    ("lone surrogate in a REST parameter", {**load("rest_api"), "multiValueQueryStringParameters": {"a": ["\ud800"]}}),
]


@pytest.mark.parametrize(("name", "event"), NOT_HTTP, ids=[n for n, _ in NOT_HTTP])
def test_non_http_or_broken_events_get_400(
    name: str, event: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    called: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", called.append)
    response, log = invoke(event, capsys)
    assert response["statusCode"] == 400
    assert error_of(response) == "not_http_event"
    assert json.loads(response["body"])["message"]
    assert log["outcome"] == "bad_request"
    assert called == []
    with pytest.raises(EventError):
        parse_lambda_event(event)


@pytest.mark.parametrize("missing", ["QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"])
def test_missing_keys_fail_closed_with_500(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(missing)
    called: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", called.append)
    response, log = invoke(signed("function_url"), capsys)
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
    response, log = invoke(signed("rest_api"), capsys)
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
    response, log = invoke(signed(name), capsys)
    assert response["statusCode"] == 489
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert json.loads(response["body"]) == {"error": "non_retryable", "message": "unknown event type"}
    assert log["outcome"] == "non_retryable"
    assert_front_door_shape(load(name), response)


def test_message_gives_the_handler_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", seen.append)
    invoke(signed("rest_api"), capsys)
    (message,) = seen
    assert message.body == JSON_BODY
    assert message.text == JSON_BODY.decode()
    assert message.json() == {"event": "order.created", "id": 42}
    assert message.message_id == "msg_4"
    assert message.retried == 0
    assert message.headers["content-type"] == "application/json"
    assert message.claims.subject == DOORS["rest_api"][0]
    assert message.url == DOORS["rest_api"][0]


@pytest.mark.parametrize(
    ("retried", "expected"), [("0", 0), ("3", 3), (" 12 ", 12), ("", 0), ("-1", 0), ("x", 0), ("٣", 0), ("9" * 5000, 0)]
)
def test_retried_is_an_int(
    retried: str, expected: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", seen.append)
    invoke(set_header(signed("function_url"), "upstash-retried", retried), capsys)
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
    response, log = invoke(signed(name), capsys)
    assert (response["statusCode"], response["body"], response["isBase64Encoded"]) == (status, body, is_base64)
    assert log["status"] == status
    assert_front_door_shape(load(name), response)


def test_unserialisable_reply_is_a_handler_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lambda_function, "handle", lambda message: {"when": object()})
    response, log = invoke(signed("function_url"), capsys)
    assert (response["statusCode"], log["outcome"]) == (500, "handler_error")


def test_multi_region_picks_the_regions_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_REGION", "EU_CENTRAL_1")
    monkeypatch.setenv("US_EAST_1_QSTASH_CURRENT_SIGNING_KEY", "sig_us_current")
    monkeypatch.setenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY", "sig_us_next")
    url, body = DOORS["function_url"]  # its event carries upstash-region: US-EAST-1
    us_event = set_header(load("function_url"), "upstash-signature", token_for(url, body, "sig_us_next"))
    assert invoke(us_event, capsys)[0]["statusCode"] == 200
    eu_signed = set_header(load("function_url"), "upstash-signature", token_for(url, body, CURRENT_KEY))
    assert error_of(invoke(eu_signed, capsys)[0]) == "bad_signature"
    monkeypatch.delenv("US_EAST_1_QSTASH_NEXT_SIGNING_KEY")
    response, log = invoke(us_event, capsys)
    assert (response["statusCode"], log["variable"]) == (500, "US_EAST_1_QSTASH_NEXT_SIGNING_KEY")


def test_logs_and_answers_never_hold_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_body = b'{"card":"4111111111111111"}'
    url = DOORS["function_url"][0]
    token = token_for(url, secret_body)
    cases: list[Callable[[dict[str, Any]], None]] = [
        lambda e: None,  # verified
        lambda e: e.update(body=e["body"] + " "),  # body mismatch
        lambda e: e["headers"].update({"upstash-signature": token[:-4] + "AAAA"}),  # bad signature
        lambda e: monkeypatch.delenv("QSTASH_NEXT_SIGNING_KEY"),  # misconfigured
    ]
    for change in cases:
        event = set_header(load("function_url"), "upstash-signature", token)
        event["body"] = secret_body.decode()
        change(event)
        response = lambda_function.lambda_handler(event, None)
        output = capsys.readouterr()
        everything = output.out + output.err + json.dumps(response)
        for secret in (CURRENT_KEY, NEXT_KEY, token, token.split(".")[2], "4111111111111111"):
            assert secret not in everything


def test_one_log_line_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    _, log = invoke(signed("alb"), capsys)
    assert {"outcome", "status", "reason", "message_id", "retried", "duration_ms"} <= set(log)
    assert (log["message_id"], log["retried"]) == ("msg_5", 3)
    assert isinstance(log["duration_ms"], float)


JUNK: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x",
    "\ud800",
    "é",
    [],
    {},
    [1],
    ["a", None],
    {"a": 1},
    {"a": [1]},
    "QUFB",
    "!!",
]


def places(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside a JSON-like value."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((value, key))
        found.extend(places(child))
    return found


def test_mutated_events_always_get_a_proper_answer(capsys: pytest.CaptureFixture[str]) -> None:
    import random

    rng = random.Random(20261129)
    statuses: set[int] = set()
    for _ in range(1500):
        event = signed(rng.choice(list(DOORS)))
        for _ in range(rng.randint(1, 3)):
            container, key = rng.choice(places(event))
            if isinstance(container, dict) and rng.random() < 0.3:
                del container[key]
            else:
                container[key] = copy.deepcopy(rng.choice(JUNK))
        response = lambda_function.lambda_handler(event, None)
        assert response["statusCode"] in {200, 400, 401}, response
        assert isinstance(response["body"], str)
        statuses.add(response["statusCode"])
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1
        json.loads(lines[0])
    assert statuses == {200, 400, 401}
