"""Shared test helpers: an independent token minter (plain hmac + json, not qstash_verify)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CURRENT_KEY = "sig_test_current_3Fh7Kq9Lm2Np4Rs6"
NEXT_KEY = "sig_test_next_8Tv1Wx3Yz5Ab7Cd9"
URL = "https://hooks.example.com/api/qstash"
BODY = b'{"event":"order.created","id":42}'
NOW = 1_764_374_400
HEADER = {"alg": "HS256", "typ": "JWT"}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


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


def load_vectors() -> dict[str, Any]:
    with open(Path(__file__).parent / "qstash-signatures.json", encoding="utf-8") as file:
        return json.load(file)  # type: ignore[no-any-return]
