"""Seeded fuzz tests: thousands of altered tokens and Lambda events; only documented errors and answers."""

from __future__ import annotations

import copy
import json
import random
from typing import Any, Callable

import pytest
from conftest import BODY, CURRENT_KEY, DOORS, NEXT_KEY, NOW, URL, claims, mint, signed_event

import lambda_function
from qstash_verify import MAX_TOKEN_BYTES, Receiver, SignatureError

SEED = 20261129
ROUNDS = 3000
RECEIVER = Receiver(CURRENT_KEY, NEXT_KEY)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ \t\n\x00é✓"
BASE_TOKENS = [mint(), mint(key=NEXT_KEY)]


def flip(rng: random.Random, token: str) -> str:
    i = rng.randrange(len(token))
    return token[:i] + rng.choice(ALPHABET.replace(token[i], "")) + token[i + 1 :]


def drop(rng: random.Random, token: str) -> str:
    i = rng.randrange(len(token))
    return token[:i] + token[i + 1 :]


def truncate(rng: random.Random, token: str) -> str:
    return token[: rng.randrange(len(token))]


def extend(rng: random.Random, token: str) -> str:
    return token + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8)))


def insert(rng: random.Random, token: str) -> str:
    i = rng.randrange(len(token) + 1)
    return token[:i] + rng.choice(ALPHABET) + token[i:]


def swap_chars(rng: random.Random, token: str) -> str:
    i, j = sorted(rng.sample(range(len(token)), 2))
    if token[i] == token[j]:
        return flip(rng, token)
    return token[:i] + token[j] + token[i + 1 : j] + token[i] + token[j + 1 :]


def reorder_segments(rng: random.Random, token: str) -> str:
    segments = token.split(".")
    while True:
        order = rng.sample(segments, len(segments))
        if order != segments:
            return ".".join(order)


def splice(rng: random.Random, token: str) -> str:
    other = mint(claims(sub="https://evil.example/", jti=str(rng.random())), key="attacker").split(".")
    segments = token.split(".")
    i = rng.randrange(3)
    segments[i] = other[i]
    return ".".join(segments)


def duplicate_segment(rng: random.Random, token: str) -> str:
    segments = token.split(".")
    segments.insert(rng.randrange(4), rng.choice(segments))
    return ".".join(segments)


def junk(rng: random.Random, token: str) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 300)))


def huge(rng: random.Random, token: str) -> str:
    return token + "A" * rng.randint(MAX_TOKEN_BYTES - len(token), 4 * MAX_TOKEN_BYTES)


MUTATIONS: list[Callable[[random.Random, str], str]] = [
    flip,
    drop,
    truncate,
    extend,
    insert,
    swap_chars,
    reorder_segments,
    splice,
    duplicate_segment,
    junk,
    huge,
]


def verify(token: object, **kwargs: Any) -> None:
    RECEIVER.verify(signature=token, body=BODY, url=URL, now=NOW, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.__name__ for m in MUTATIONS])
def test_mutated_tokens_raise_only_signature_error(mutation: Callable[[random.Random, str], str]) -> None:
    rng = random.Random(f"{SEED}-{mutation.__name__}")
    rejected = 0
    for _ in range(ROUNDS // len(MUTATIONS) + 1):
        original = rng.choice(BASE_TOKENS)
        token = mutation(rng, original)
        if token == original:
            continue
        with pytest.raises(SignatureError):
            verify(token)
        rejected += 1
    assert rejected > ROUNDS // len(MUTATIONS) // 2


BAD_CLAIMS: dict[str, list[Any]] = {
    "iss": ["upstash", "", None, 1, ["Upstash"]],
    "sub": [URL + "x", "", None, 5, "https://evil.example/", URL + "//"],
    "exp": [NOW, NOW - 1, None, "9999999999", True, float("nan"), float("inf"), 10**400, []],
    "nbf": [NOW + 10, None, "0", True, float("nan"), float("-inf"), {}],
    "body": ["", "x", None, 7, claims()["body"][::-1], claims()["body"].upper()],
    "iat": ["x", None, True, float("nan")],
    "jti": [1, None, [], False],
}


def test_resigned_altered_claims_are_rejected() -> None:
    rng = random.Random(SEED)
    for _ in range(ROUNDS):
        name = rng.choice(sorted(BAD_CLAIMS))
        payload = claims(**{name: rng.choice(BAD_CLAIMS[name])})
        token = mint(payload, key=rng.choice([CURRENT_KEY, NEXT_KEY]))
        with pytest.raises(SignatureError):
            verify(token)


def test_random_json_payloads_resigned_raise_only_signature_error() -> None:
    rng = random.Random(SEED + 1)
    scalars: list[Any] = [None, True, 0, -1, 2.5, "", "x", [], {}, "Upstash", URL, NOW + 100]
    keys = ["iss", "sub", "exp", "nbf", "iat", "jti", "body", "alg", ""]
    for _ in range(ROUNDS):
        payload: Any = {rng.choice(keys): rng.choice(scalars) for _ in range(rng.randint(0, 8))}
        if rng.random() < 0.1:
            payload = rng.choice(scalars)
        with pytest.raises(SignatureError):
            verify(mint(json.dumps(payload).encode(), key=rng.choice([CURRENT_KEY, NEXT_KEY])))


def test_random_headers_raise_only_signature_error() -> None:
    rng = random.Random(SEED + 2)
    values: list[Any] = [None, "HS256", "hs256", "none", "HS512", 256, [], {"alg": "HS256"}, ""]
    accepted = 0
    for _ in range(ROUNDS // 3):
        header = {rng.choice(["alg", "typ", "kid", "crit"]): rng.choice(values) for _ in range(rng.randint(0, 4))}
        token = mint(header=header)
        try:
            verify(token)
            accepted += 1
            assert header.get("alg") == "HS256"
            assert "crit" not in header
        except SignatureError:
            assert header.get("alg") != "HS256" or "crit" in header
    assert accepted > 0


def test_random_bodies_never_verify_against_another_bodys_token() -> None:
    rng = random.Random(SEED + 3)
    token = mint()
    for _ in range(ROUNDS // 3):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        with pytest.raises(SignatureError):
            RECEIVER.verify(signature=token, body=body, url=URL, now=NOW)


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


@pytest.mark.usefixtures("lambda_keys")
def test_mutated_events_always_get_a_proper_answer(capsys: pytest.CaptureFixture[str]) -> None:
    import random

    rng = random.Random(20261129)
    statuses: set[int] = set()
    for _ in range(1500):
        event = signed_event(rng.choice(list(DOORS)))
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


URL_JUNK: list[Any] = [
    None, 0, 1.5, "", "/", "/a%2", "%", "/\ud800", "é", "\u20ac", b"/x", b"\xff", [], ["a"], ("h", 1), ("h",), "a, b",
    "for=x;proto=https;host=h", 'proto="https', "proto=https;;host", "[::1]:80", "http", "https",
]  # fmt: skip
WSGI_KEYS = [
    "RAW_URI", "REQUEST_URI", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT",
    "wsgi.url_scheme", "HTTP_FORWARDED", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
]  # fmt: skip
ASGI_KEYS = ["path", "raw_path", "query_string", "scheme", "server", "headers"]


def test_url_helpers_on_random_requests_return_a_url_or_raise_event_error() -> None:
    from qstash_verify import EventError, url_from_asgi, url_from_wsgi

    rng = random.Random(SEED)
    for _ in range(3000):
        environ = {key: rng.choice(URL_JUNK) for key in rng.sample(WSGI_KEYS, rng.randint(0, len(WSGI_KEYS)))}
        scope = {key: rng.choice(URL_JUNK) for key in rng.sample(ASGI_KEYS, rng.randint(0, len(ASGI_KEYS)))}
        if rng.random() < 0.5:
            scope["headers"] = [
                (rng.choice([b"host", b"forwarded", b"x-forwarded-host"]), rng.choice([b"h", b"\xff", b""]))
            ]
        hops = rng.choice([None, {"x-forwarded-proto": 1}, {"forwarded": 1, "x-forwarded-host": 2}])
        for helper, request in ((url_from_wsgi, environ), (url_from_asgi, scope)):
            try:
                url = helper(request, trusted_proxies=hops)
            except EventError:
                continue
            assert url.startswith(("http://", "https://")), url
