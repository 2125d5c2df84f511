"""Callback and failure-callback envelopes (issue #9), from Upstash's documented examples."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import NOW, URL, claims, mint

from qstash_verify import Callback, EventError, Message, Receiver

# Upstash's "Callbacks" page, field for field (its examples spell sourceMessasgeId so), but for
# sourceBody: the page's "YmFzZTY0kZWQgcm9keQ==" is 21 characters, no base64 (see the last test).
DOCUMENTED_SOURCE_BODY = "YmFzZTY0kZWQgcm9keQ=="
CALLBACK = {
    "status": 200,
    "header": {"key": ["value"]},
    "body": "YmFzZTY0IGVuY29kZWQgcm9keQ==",
    "retried": 2,
    "maxRetries": 3,
    "sourceMessasgeId": "msg_xxx",
    "topicName": "myTopic",
    "endpointName": "myEndpoint",
    "url": "http://myurl.com",
    "method": "GET",
    "sourceHeader": {"key": "value"},
    "sourceBody": "c291cmNlIGJvZHk=",
    "notBefore": "1701198458025",
    "createdAt": "1701198447054",
    "scheduleId": "scd_xxx",
    "callerIP": "178.247.74.179",
}
FAILURE_CALLBACK = {**CALLBACK, "status": 400, "retried": 3, "dlqId": "1725323658779-0"}


def message(envelope: Any) -> Message:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    token = mint(claims(body=base64.urlsafe_b64encode(__import__("hashlib").sha256(body).digest()).decode()))
    verified = Receiver("sig_test_current_3Fh7Kq9Lm2Np4Rs6").verify(signature=token, body=body, url=URL, now=NOW)
    return Message(body, {}, URL, verified)


def test_a_callback_is_read_as_typed_values() -> None:
    callback = message(CALLBACK).callback()
    assert isinstance(callback, Callback)
    assert callback.status == 200
    assert callback.body == b"base64 encoded rody"
    assert callback.header == {"key": ["value"]}
    assert callback.source_header == {"key": ["value"]}
    assert callback.source_body == b"source body"
    assert (callback.retried, callback.max_retries) == (2, 3)
    assert callback.source_message_id == "msg_xxx"
    assert (callback.topic_name, callback.endpoint_name, callback.url, callback.method) == (
        "myTopic", "myEndpoint", "http://myurl.com", "GET"
    )  # fmt: skip
    assert (callback.not_before, callback.created_at) == (1701198458.025, 1701198447.054)
    assert (callback.schedule_id, callback.caller_ip, callback.dlq_id) == ("scd_xxx", "178.247.74.179", None)
    assert not callback.is_failure
    assert not callback.retries_exhausted


def test_a_failure_callback_says_so() -> None:
    callback = message(FAILURE_CALLBACK).callback()
    assert callback.is_failure
    assert callback.retries_exhausted
    assert callback.dlq_id == "1725323658779-0"


def test_binary_and_utf8_bodies_come_back_as_the_exact_bytes() -> None:
    binary, text = bytes(range(256)), "Grüße ✓ 東京".encode()
    envelope = {**CALLBACK, "body": base64.b64encode(binary).decode(), "sourceBody": base64.b64encode(text).decode()}
    callback = message(envelope).callback()
    assert (callback.body, callback.source_body) == (binary, text)
    assert callback.source_body.decode("utf-8") == "Grüße ✓ 東京"  # not garbled, as atob() would


def test_times_as_numbers_and_the_documented_spelling_of_the_source_id() -> None:
    envelope = {**CALLBACK, "notBefore": 1701198458025, "createdAt": 1701198447054.0, "sourceMessageId": "msg_y"}
    del envelope["sourceMessasgeId"]
    callback = message(envelope).callback()
    assert (callback.not_before, callback.created_at, callback.source_message_id) == (
        1701198458.025, 1701198447.054, "msg_y"
    )  # fmt: skip


def test_optional_fields_may_be_absent() -> None:
    callback = message({"status": 500, "body": "", "retried": 0, "maxRetries": 3}).callback()
    assert (callback.body, callback.source_body, callback.header, callback.url) == (b"", b"", {}, None)


MALFORMED = [
    ("not JSON", b"not json"),
    ("a JSON list", b"[1, 2]"),
    ("no status", {k: v for k, v in CALLBACK.items() if k != "status"}),
    ("status as text", {**CALLBACK, "status": "200"}),
    ("status as bool", {**CALLBACK, "status": True}),
    ("no retried", {k: v for k, v in CALLBACK.items() if k != "retried"}),
    ("no maxRetries", {k: v for k, v in CALLBACK.items() if k != "maxRetries"}),
    ("body not base64", {**CALLBACK, "body": "not base64!"}),
    ("body not a string", {**CALLBACK, "body": 5}),
    ("header values not strings", {**CALLBACK, "header": {"k": [1]}}),
    ("header not an object", {**CALLBACK, "header": ["k"]}),
    ("createdAt not a time", {**CALLBACK, "createdAt": "yesterday"}),
    # More digits than int() reads (3.11+) or any time needs: still a malformed envelope.
    ("createdAt of 5000 digits", {**CALLBACK, "createdAt": "9" * 5000}),
    ("notBefore of 5000 digits", {**CALLBACK, "notBefore": "9" * 5000}),
    ("createdAt beyond 2**53 ms", {**CALLBACK, "createdAt": "9" * 17}),
    ("url not a string", {**CALLBACK, "url": 7}),
    ("an ordinary message", {"event": "order.created", "id": 42}),
]


@pytest.mark.parametrize(("name", "envelope"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_a_body_that_is_no_envelope_is_a_clear_error(name: str, envelope: Any) -> None:
    with pytest.raises(EventError, match=r"callback|JSON object"):
        message(envelope).callback()


def test_the_documented_example_verbatim_fails_on_its_sourcebody_only() -> None:
    with pytest.raises(EventError, match="'sourceBody' is not base64"):
        message({**CALLBACK, "sourceBody": DOCUMENTED_SOURCE_BODY}).callback()


def test_every_callback_field_is_read_from_the_envelope() -> None:
    from qstash_verify import _CALLBACK_FIELDS

    assert len(_CALLBACK_FIELDS) == len(Callback._fields)


SECRET_BODY = b'{"card": "4111 1111 1111 1111", "cvv": 123'


@pytest.mark.parametrize(
    ("body", "read", "where"),
    [
        (SECRET_BODY, lambda m: m.json(), "line 1 column"),
        (SECRET_BODY + b"\xff", lambda m: m.text, f"at byte {len(SECRET_BODY)}"),
        (SECRET_BODY + b"\xff", lambda m: m.json(), f"at byte {len(SECRET_BODY)}"),
        (b"[" * 100_000, lambda m: m.json(), "nested"),
    ],
    ids=["json", "text not utf-8", "json not utf-8", "json nested too deep"],
)
def test_body_errors_say_where_without_holding_the_body(body: bytes, read: Any, where: str) -> None:
    with pytest.raises(ValueError, match=where) as caught:
        read(message(body))
    seen, chain = [], caught.value
    while chain is not None:  # the error, its cause and context, and every attribute of each
        seen += [repr(chain), *map(repr, vars(chain).values()), *map(repr, chain.args)]
        chain = chain.__cause__ or chain.__context__
    assert not any("4111" in text for text in seen), seen
