"""Shared test helpers: an independent token minter (plain hmac + json, not qstash_verify), and Lambda events."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qstash_verify import Reason, SignatureError  # noqa: E402 -- after the path above

CURRENT_KEY = "sig_test_current_3Fh7Kq9Lm2Np4Rs6"
NEXT_KEY = "sig_test_next_8Tv1Wx3Yz5Ab7Cd9"
URL = "https://hooks.example.com/api/qstash"
BODY = b'{"event":"order.created","id":42}'
NOW = 1_764_374_400
HEADER = {"alg": "HS256", "typ": "JWT"}
QSTASH_VARIABLES = ("QSTASH_REGION", "QSTASH_URL", "QSTASH_BASE_URL", "QSTASH_CLOCK_TOLERANCE")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def body_hash(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()


def claims(**changes: Any) -> dict[str, Any]:
    """QStash-shaped claims for URL and BODY, valid at NOW; a value of ... drops the claim."""
    base: dict[str, Any] = {
        "iss": "Upstash",
        "sub": URL,
        "exp": NOW + 300,
        "nbf": 0,
        "iat": NOW,
        "jti": "jwt_test",
        "body": body_hash(BODY),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def encode_segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def mint(payload: Any = None, key: str = CURRENT_KEY, header: Any = None) -> str:
    """An HS256 token over arbitrary header and payload (dicts, or raw bytes)."""
    signing_input = (
        encode_segment(HEADER if header is None else header)
        + "."
        + encode_segment(claims() if payload is None else payload)
    )
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def token_for(url: str, body: bytes, key: str = CURRENT_KEY, **changes: Any) -> str:
    """A token for ``url`` and ``body``, valid for the next five minutes of the real clock."""
    now = int(time.time())
    return mint(claims(**{"sub": url, "body": body_hash(body), "iat": now, "exp": now + 300, **changes}), key=key)


def reason_of(call: Callable[[], object]) -> Reason:
    with pytest.raises(SignatureError) as caught:
        call()
    return caught.value.reason


def load_vectors() -> dict[str, Any]:
    with open(Path(__file__).parent / "qstash-signatures.json", encoding="utf-8") as file:
        return json.load(file)  # type: ignore[no-any-return]


# --- Lambda events --------------------------------------------------------------------

EVENTS = Path(__file__).parent / "events"
JSON_BODY = b'{"event":"order.created","id":42}'


class Door(NamedTuple):
    """A fixture in tests/events, named after its front door: what the event means, what the answer must be."""

    url: str  # the public URL QStash was given, by AWS's documented rules
    body: bytes
    status_description: bool = False  # ALBs want "200 OK" beside the status
    multi_value_headers: bool = False  # an ALB with multi-value headers wants only those in the answer


DOORS = {
    "function_url": Door(
        "https://xyz789abcdefghijklmn.lambda-url.us-east-1.on.aws/api/qstash?tenant=7&kind=daily", JSON_BODY
    ),
    "http_api_v2": Door(
        "https://r3pmxmplak.execute-api.us-east-2.amazonaws.com/prod/hooks/order%20created?a=1&b=x%20y", JSON_BODY
    ),
    "http_api_v1": Door("https://id.execute-api.us-east-1.amazonaws.com/default/hooks?job=nightly", JSON_BODY),
    "rest_api": Door(
        "https://1234567890.execute-api.us-east-1.amazonaws.com/prod/hooks/qstash?tenant=7&tag=a%20b", JSON_BODY
    ),
    "alb": Door(
        "http://internal-lambda-alb.example.com/hooks/qstash%20in?name=me%20too&id=9",
        JSON_BODY,
        status_description=True,
    ),
    "alb_multi_value": Door(
        "https://hooks.example.com/hooks/qstash?tag=a&tag=b&id=9",
        bytes([0, 1, 2, 3, 254, 253, 252, 255]),
        status_description=True,
        multi_value_headers=True,
    ),
}
# API Gateway REST and HTTP v1 answers may hold only these keys.
REST_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
PHRASES = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           489: "Non-Retryable Error", 500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


@pytest.fixture
def lambda_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test keys in the environment, and no other QSTASH setting."""
    for name in QSTASH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", CURRENT_KEY)
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", NEXT_KEY)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


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


def signed_event(name: str, *, url: str | None = None, key: str = CURRENT_KEY) -> dict[str, Any]:
    door = DOORS[name]
    return set_header(load_event(name), "upstash-signature", token_for(url or door.url, door.body, key))


def invoke(event: Any, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Call lambda_function.lambda_handler; return its response and its one log line."""
    import lambda_function

    response = lambda_function.lambda_handler(event, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return response, json.loads(lines[0])


def error_of(response: dict[str, Any]) -> str:
    return json.loads(response["body"])["error"]  # type: ignore[no-any-return]


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """The answer's headers, whichever of the two shapes it has."""
    if "multiValueHeaders" in response and "headers" not in response:
        return {k: ",".join(v) for k, v in response["multiValueHeaders"].items()}
    return dict(response["headers"])


def assert_answer_shape(name: str, response: dict[str, Any]) -> None:
    """The answer has exactly the shape DOORS[name] describes (a wrong one is a 502 at the front door)."""
    door = DOORS[name]
    assert type(response["statusCode"]) is int
    assert isinstance(response["body"], str)
    assert isinstance(response["isBase64Encoded"], bool)
    if door.multi_value_headers:
        assert "headers" not in response
        values = response["multiValueHeaders"].values()
        assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in values)
    else:
        assert "multiValueHeaders" not in response
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in response["headers"].items())
    if door.status_description:
        assert response["statusDescription"] == f"{response['statusCode']} {PHRASES[response['statusCode']]}"
    else:
        assert "statusDescription" not in response
    if name in ("rest_api", "http_api_v1"):
        assert set(response) <= REST_KEYS
