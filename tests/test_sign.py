"""sign(): QStash's token layout, and verify(sign(...)) over random URLs and bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string

import pytest
from conftest import CURRENT_KEY, NEXT_KEY, NOW, b64url_decode

from qstash_verify import DEFAULT_TTL_SECONDS, ConfigurationError, Reason, Receiver, SignatureError, sign


def test_token_layout_matches_qstash() -> None:
    token = sign(CURRENT_KEY, url="https://a.example/x?y=1", body=b"hello", now=NOW, jwt_id="jwt_fixed")
    header, payload, mac = token.split(".")
    assert b64url_decode(header) == b'{"alg":"HS256","typ":"JWT"}'
    claims = json.loads(b64url_decode(payload))
    assert list(claims) == ["iss", "sub", "exp", "nbf", "iat", "jti", "body"]
    assert claims == {
        "iss": "Upstash",
        "sub": "https://a.example/x?y=1",
        "exp": NOW + DEFAULT_TTL_SECONDS,
        "nbf": 0,
        "iat": NOW,
        "jti": "jwt_fixed",
        "body": base64.urlsafe_b64encode(hashlib.sha256(b"hello").digest()).decode(),
    }
    expected = hmac.new(CURRENT_KEY.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert b64url_decode(mac) == expected
    assert "=" not in token


def test_each_token_gets_a_fresh_jwt_id() -> None:
    ids = {
        Receiver(CURRENT_KEY).verify(signature=sign(CURRENT_KEY, url="u", body=b""), body=b"").jwt_id for _ in range(50)
    }
    assert len(ids) == 50
    assert all(jwt_id and jwt_id.startswith("jwt_") for jwt_id in ids)


def test_ttl_and_not_before_are_honoured() -> None:
    token = sign(CURRENT_KEY, url="u", body=b"", now=NOW, ttl=10, not_before=NOW + 5)
    receiver = Receiver(CURRENT_KEY)
    for now, reason in [(NOW + 4, Reason.NOT_YET_VALID), (NOW + 10, Reason.EXPIRED)]:
        with pytest.raises(SignatureError) as caught:
            receiver.verify(signature=token, body=b"", now=now)
        assert caught.value.reason is reason
    assert receiver.verify(signature=token, body=b"", now=NOW + 5).expires_at == NOW + 10


def test_sign_refuses_an_empty_key() -> None:
    with pytest.raises(ConfigurationError):
        sign("", url="u", body=b"")


def random_url(rng: random.Random) -> str:
    path = "/".join(
        "".join(rng.choice(string.ascii_letters + "-._~%20") for _ in range(rng.randint(0, 8))) for _ in range(3)
    )
    query = "&".join(f"k{i}={rng.randint(0, 999)}" for i in range(rng.randint(0, 3)))
    host = rng.choice(["abc.lambda-url.us-east-1.on.aws", "api.example.com:8443", "[::1]", "exämple.com"])
    return f"https://{host}/{path}" + (f"?{query}" if query else "")


def random_body(rng: random.Random) -> bytes | str:
    kind = rng.randrange(4)
    if kind == 0:
        return b""
    if kind == 1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2048)))
    if kind == 2:
        return "".join(rng.choice('aé✓𝄞 \n{}"') for _ in range(rng.randint(0, 200)))
    return json.dumps({"n": rng.random(), "s": "x" * rng.randint(0, 50)}).encode()


def test_round_trip_over_random_urls_and_bodies() -> None:
    rng = random.Random(7)
    receiver = Receiver(CURRENT_KEY, NEXT_KEY)
    for _ in range(500):
        url, body, key = random_url(rng), random_body(rng), rng.choice([CURRENT_KEY, NEXT_KEY])
        token = sign(key, url=url, body=body, now=NOW)
        claims = receiver.verify(signature=token, body=body, url=url, now=NOW + rng.randint(0, 299))
        assert claims.subject == url
        as_bytes = body.encode() if isinstance(body, str) else body
        assert receiver.verify(signature=token, body=memoryview(as_bytes), url=url, now=NOW).subject == url
        with pytest.raises(SignatureError) as caught:
            receiver.verify(signature=token, body=as_bytes + b"!", url=url, now=NOW)
        assert caught.value.reason is Reason.BODY_MISMATCH
