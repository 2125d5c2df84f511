"""Lambda events from every front door: the door, the public URL, the raw body, and the 400s (issue #3, #10)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from conftest import (
    CURRENT_KEY,
    DOORS,
    JSON_BODY,
    body_hash,
    claims,
    error_of,
    invoke,
    load_event,
    mint,
    set_header,
    signed_event,
    token_for,
)

import lambda_function
from qstash_verify import EventError, Message, parse_lambda_event

pytestmark = pytest.mark.usefixtures("lambda_keys")


@pytest.mark.parametrize("name", DOORS)
def test_event_adapter_rebuilds_the_public_url_and_raw_body(name: str) -> None:
    request = parse_lambda_event(load_event(name))
    assert request.url == DOORS[name].url
    assert request.body == DOORS[name].body
    assert request.method == "POST"
    assert all(k == k.lower() for k in request.headers)


@pytest.mark.parametrize("name", [n for n in DOORS if not load_event(n).get("isBase64Encoded")])
def test_base64_encoded_text_body_is_decoded(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = signed_event(name)
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb"])
def test_base64_binary_body_is_verified_byte_for_byte(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = bytes(range(256)) * 4
    event = set_header(load_event(name), "upstash-signature", token_for(DOORS[name].url, binary))
    event.update(body=base64.b64encode(binary).decode(), isBase64Encoded=True)
    received: list[bytes] = []
    monkeypatch.setattr(lambda_function, "handle", lambda message: received.append(message.body))
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200
    assert received == [binary]


@pytest.mark.parametrize("body", [None, ""])
@pytest.mark.parametrize("name", ["function_url", "rest_api", "alb"])
def test_absent_or_null_body_is_the_empty_body(name: str, body: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(load_event(name), "upstash-signature", token_for(DOORS[name].url, b""))
    if body is None:
        del event["body"]
    else:
        event["body"] = body
    assert parse_lambda_event(event).body == b""
    response, log = invoke(event, capsys)
    assert (response["statusCode"], log["outcome"]) == (200, "ok")


def test_header_lookup_is_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    event = signed_event("rest_api")
    for field in ("headers", "multiValueHeaders"):
        event[field]["UPSTASH-SIGNATURE"] = event[field].pop("Upstash-Signature")
        event[field]["HOST"] = event[field].pop("Host")
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_rest_api_with_only_single_value_headers(capsys: pytest.CaptureFixture[str]) -> None:
    event = signed_event("rest_api")
    del event["multiValueHeaders"], event["multiValueQueryStringParameters"]
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_host_falls_back_to_the_domain_name(capsys: pytest.CaptureFixture[str]) -> None:
    event = set_header(signed_event("function_url"), "host", None)
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_qstash_url_overrides_the_rebuilt_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = "https://api.example.com/v1/hooks/qstash?tenant=7&tag=a%20b"
    event = signed_event("rest_api", url=custom)
    response, _ = invoke(event, capsys)
    assert error_of(response) == "url_mismatch"
    monkeypatch.setenv("QSTASH_URL", custom)
    response, _ = invoke(event, capsys)
    assert response["statusCode"] == 200


def test_clock_tolerance_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    url, body = DOORS["function_url"][:2]
    token = mint(claims(sub=url, body=body_hash(body), iat=now - 300, exp=now - 5))
    event = set_header(load_event("function_url"), "upstash-signature", token)
    assert error_of(invoke(event, capsys)[0]) == "expired"
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "30")
    assert invoke(event, capsys)[0]["statusCode"] == 200
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "soon")
    response, log = invoke(event, capsys)
    assert (response["statusCode"], log["variable"]) == (500, "QSTASH_CLOCK_TOLERANCE")


NOT_HTTP = [
    ("console test event", load_event("console_test")),
    ("null", None),
    ("list", [1, 2]),
    ("string", "hello"),
    ("empty object", {}),
    ("request context only", {"requestContext": {}}),
    ("sqs record", {"Records": [{"eventSource": "aws:sqs", "body": "x"}]}),
    ("body not a string", {**load_event("function_url"), "body": {"a": 1}}),
    ("headers not an object", {**load_event("function_url"), "headers": ["host"]}),
    ("header value not a string", {**load_event("function_url"), "headers": {"host": 5}}),
    ("bad base64 body", {**load_event("function_url"), "isBase64Encoded": True, "body": "not base64!"}),
    ("no host at all", {**load_event("alb"), "headers": {}}),
    ("rawPath not a string", {**load_event("function_url"), "rawPath": 7}),
    ("query not an object", {**load_event("alb"), "queryStringParameters": "a=1"}),
    ("lone surrogate in the path", {**load_event("function_url"), "rawPath": "/\ud800"}),
    (
        "lone surrogate in a REST parameter",
        {**load_event("rest_api"), "multiValueQueryStringParameters": {"a": ["\ud800"]}},
    ),
]


@pytest.mark.parametrize(("name", "event"), NOT_HTTP, ids=[n for n, _ in NOT_HTTP])
def test_non_http_or_broken_events_get_400(
    name: str, event: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    called: list[Message] = []
    monkeypatch.setattr(lambda_function, "handle", called.append)
    response, log = invoke(event, capsys)
    assert response["statusCode"] == 400
    # An HTTP event that cannot be read is a bad request; anything else is no HTTP event at all.
    http = isinstance(event, dict) and any(key in event for key in ("rawPath", "httpMethod"))
    assert error_of(response) == ("bad_request" if http else "not_http_event")
    assert json.loads(response["body"])["message"]
    assert log["outcome"] == "bad_request"
    assert called == []
    with pytest.raises(EventError):
        parse_lambda_event(event)


@pytest.mark.parametrize("name", DOORS)
def test_each_front_door_is_named_by_the_event(name: str) -> None:
    assert parse_lambda_event(load_event(name)).door == name


@pytest.mark.parametrize(
    ("base_url", "signed_for"),
    [
        ("https://hooks.example.com", "https://hooks.example.com/api/qstash?tenant=7&kind=daily"),
        ("https://hooks.example.com/", "https://hooks.example.com/api/qstash?tenant=7&kind=daily"),
        ("https://hooks.example.com/edge", "https://hooks.example.com/edge/api/qstash?tenant=7&kind=daily"),
        ("http://localhost:9000", "http://localhost:9000/api/qstash?tenant=7&kind=daily"),
    ],
)
def test_qstash_base_url_replaces_scheme_and_host_keeping_path_and_query(
    base_url: str, signed_for: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = signed_event("function_url", url=signed_for)
    assert error_of(invoke(event, capsys)[0]) == "url_mismatch"
    monkeypatch.setenv("QSTASH_BASE_URL", base_url)
    response, log = invoke(event, capsys)
    assert (response["statusCode"], log["outcome"]) == (200, "ok")
    other_path = set_header(event, "upstash-signature", token_for(signed_for.replace("/api/", "/other/"), JSON_BODY))
    assert error_of(invoke(other_path, capsys)[0]) == "url_mismatch"


@pytest.mark.parametrize("base_url", ["hooks.example.com", "ftp://h.example", "https://", "https://h.example/?a=1"])
def test_invalid_qstash_base_url_fails_closed_naming_it(
    base_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_BASE_URL", base_url)
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], log["variable"]) == (500, "QSTASH_BASE_URL")


def test_qstash_url_wins_over_the_base_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pinned = "https://pinned.example.com/hook"
    monkeypatch.setenv("QSTASH_URL", pinned)
    monkeypatch.setenv("QSTASH_BASE_URL", "https://hooks.example.com")
    assert invoke(signed_event("function_url", url=pinned), capsys)[0]["statusCode"] == 200


def merge_seconds(variants: int) -> float:
    event = load_event("function_url")
    names = [
        "".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate("xvariantabcdefghij")) for i in range(variants)
    ]
    event["headers"] = {**load_event("function_url")["headers"], **dict.fromkeys(names, "v")}
    started = time.perf_counter()
    request = parse_lambda_event(event)
    elapsed = time.perf_counter() - started
    assert request.headers["xvariantabcdefghij"] == ",".join(["v"] * variants)
    return elapsed


def test_merging_case_variants_of_one_header_is_linear() -> None:
    # Issue #8, 7: was quadratic (131,072 variants, 4 s).  Side by side: 8x the variants, well under 64x the time.
    small = min(merge_seconds(8192) for _ in range(3))
    large = min(merge_seconds(65536) for _ in range(3))
    assert large < 24 * small, (small, large)


def test_a_base64_body_is_decoded_without_an_ascii_copy() -> None:
    import tracemalloc

    body = bytes(range(256)) * 4096 * 6  # 6 MiB
    event = {**load_event("function_url"), "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    tracemalloc.start()
    try:
        request = parse_lambda_event(event)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert request.body == body
    assert peak < 1.3 * len(body), peak / len(body)


def test_environ_with_values_that_are_not_strings_answers_500(capsys: pytest.CaptureFixture[str]) -> None:
    from qstash_verify import serve_lambda

    environ: Any = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "QSTASH_NEXT_SIGNING_KEY": 42}
    response = serve_lambda(signed_event("function_url"), lambda message: None, environ=environ)
    log = json.loads(capsys.readouterr().out)
    assert (response["statusCode"], log["variable"]) == (500, "QSTASH_NEXT_SIGNING_KEY")


@pytest.mark.parametrize(
    ("body", "decoded"),
    [("", b""), ("YWI=", b"ab"), ("YWJj", b"abc"), ("YWJjZA==", b"abcd"), ("YWI", None), ("YWI==", None),
     ("YWJj=", None), ("YWJjZA=", None), ("YWJjZA===", None), ("=YWJj", None), ("YWJjZA==YWJj", None),
     ("YW Jj", None), ("YWJ\nj", None), ("YWJjé===", None), ("YWJj-_==", None)],
)  # fmt: skip
def test_base64_bodies_are_read_alike_on_every_python(body: str, decoded: bytes | None) -> None:
    event = {**load_event("function_url"), "body": body, "isBase64Encoded": True}
    if decoded is None:
        with pytest.raises(EventError, match="not base64"):
            parse_lambda_event(event)
    else:
        assert parse_lambda_event(event).body == decoded


def test_with_a_base_url_nothing_from_host_reaches_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_BASE_URL", "https://api.example.com")
    event = {**set_header(load_event("alb"), "host", "x/admin"), "path": "/hook", "queryStringParameters": {}}
    for signed_for, status in (("https://api.example.com/admin/hook", 401), ("https://api.example.com/hook", 200)):
        token = token_for(signed_for, DOORS["alb"].body)
        response, log = invoke(set_header(event, "upstash-signature", token), capsys)
        assert response["statusCode"] == status, log


@pytest.mark.parametrize("host", ["x/admin", "h.example?a=1", "user@h.example", "h.example:1:2"])
def test_without_a_base_url_a_host_that_is_not_host_and_port_is_a_400(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    event = set_header(signed_event("alb"), "host", host)
    response, log = invoke(event, capsys)
    assert (response["statusCode"], error_of(response), log["outcome"]) == (400, "bad_request", "bad_request")
    assert "host" in log["detail"]


@pytest.mark.parametrize(
    ("door", "field", "genuine", "forged"),
    [
        # HTTP APIs hand the path over decoded: a "%" in it is data (the client sent %25).
        ("http_api_v2", "rawPath", "/prod/q/%2541dmin", "/prod/q/Admin"),
        ("http_api_v1", "path", "/default/q/%2541dmin", "/default/q/Admin"),
    ],
)
def test_a_decoded_path_is_data_not_escapes(
    door: str, field: str, genuine: str, forged: str, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event(door)
    decoded = genuine.replace("%25", "%")
    event[field] = decoded
    if door == "http_api_v1":
        event["requestContext"]["path"] = decoded
    origin, query = DOORS[door].url.split("/", 3)[:3], DOORS[door].url.partition("?")[2]
    base = "/".join(origin)
    for path, status in ((genuine, 200), (forged, 401)):
        token = token_for(base + path + (f"?{query}" if query else ""), DOORS[door].body)
        response, log = invoke(set_header(event, "upstash-signature", token), capsys)
        assert response["statusCode"] == status, log


@pytest.mark.parametrize("door", ["function_url", "rest_api", "alb"])
def test_a_raw_path_keeps_its_escapes(door: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = load_event(door)
    field = "rawPath" if door == "function_url" else "path"
    event[field] = "/q/%41dmin%2F"
    if door == "rest_api":
        event["requestContext"]["path"] = "/prod/q/%41dmin%2F"
    url = parse_lambda_event(event).url
    assert url.partition("?")[0].endswith("/q/%41dmin%2F"), url
