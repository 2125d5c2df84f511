"""Verify Upstash QStash webhook signatures with the standard library only.

QStash signs every delivery with an ``Upstash-Signature`` header: an HS256 JWT
whose claims bind the request to its destination URL (``sub``) and to the
SHA-256 of its raw body (``body``).  ``Receiver.verify`` checks all of it and
returns the verified ``Claims``, or raises ``SignatureError`` whose ``reason``
says which check failed::

    receiver = Receiver.from_env()          # QSTASH_*_SIGNING_KEY
    claims = receiver.verify(signature=header, body=raw_body, url=url_from_wsgi(environ))

Also here: ``url_from_wsgi`` and ``url_from_asgi`` rebuild the URL QStash called
in any web framework, ``sign`` mints tokens exactly as QStash does (for tests and
local development), the AWS Lambda adapter (``serve_lambda``) behind
``lambda_function.py``, and a command line: ``python3 qstash_verify.py --help``.

One file, Python 3.9+, no dependencies: vendor it into any project.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_TOKEN_BYTES",
    "Callback",
    "Claims",
    "ConfigurationError",
    "DedupUnavailable",
    "Deduplicator",
    "DynamoDBStore",
    "EventError",
    "HttpRequest",
    "MemoryStore",
    "Message",
    "NonRetryableError",
    "Reason",
    "Receiver",
    "RetryLater",
    "SignatureError",
    "parse_lambda_event",
    "serve_lambda",
    "sign",
    "url_from_asgi",
    "url_from_wsgi",
    "verify_lambda_event",
]

import binascii
import collections
import enum
import hashlib
import hmac
import itertools
import json
import operator
import os
import re
import sys
import time
import types

# typing costs a cold start about 2 ms and verification needs none of it at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from datetime import datetime
    from typing import Any, NamedTuple

    Handler = Callable[["Message"], Any]
else:

    class _NamedTupleMeta(type):
        """``class X(NamedTuple)`` as typing spells it, built with collections.namedtuple."""

        def __new__(cls, name, bases, namespace):
            fields = namespace.pop("__annotations__")  # strings, thanks to the __future__ import
            defaults = [namespace.pop(field) for field in fields if field in namespace]
            base = collections.namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            return type(name, (base,), {"__slots__": (), **namespace})

    NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})

#: Longest ``Upstash-Signature`` accepted; real tokens are ~400 bytes plus the URL.
MAX_TOKEN_BYTES = 16 * 1024
#: Lifetime of tokens minted by ``sign`` (QStash's own: five minutes).
DEFAULT_TTL_SECONDS = 300
_ALGORITHM = "HS256"
_ISSUER = "Upstash"
# exp, nbf and iat beyond this many seconds from the epoch are ill-typed (2**53: exact as a float).
_MAX_TIME_SECONDS = 2**53
_CURRENT_KEY_VARIABLE = "QSTASH_CURRENT_SIGNING_KEY"
_NEXT_KEY_VARIABLE = "QSTASH_NEXT_SIGNING_KEY"
_REGION_VARIABLE = "QSTASH_REGION"
_URL_VARIABLE = "QSTASH_URL"
_BASE_URL_VARIABLE = "QSTASH_BASE_URL"
_CLOCK_TOLERANCE_VARIABLE = "QSTASH_CLOCK_TOLERANCE"
# The regions QStash runs in: the only names an Upstash-Region header may select keys by.
_REGIONS = ("EU_CENTRAL_1", "US_EAST_1")
_SIGNATURE_HEADER = "upstash-signature"
_REGION_HEADER = "upstash-region"
_MESSAGE_ID_HEADER = "upstash-message-id"
_RETRIED_HEADER = "upstash-retried"
_NON_RETRYABLE_HEADER = "Upstash-NonRetryable-Error"
_CONTENT_TYPE_HEADER = "content-type"
_HOST_HEADER = "host"
_FORWARDED_HEADER = "forwarded"
_FORWARDED_PROTO_HEADER = "x-forwarded-proto"
_FORWARDED_HOST_HEADER = "x-forwarded-host"
_NON_RETRYABLE_STATUS = 489
_RETRY_STATUS = 503
_RETRY_AFTER_HEADER = "Retry-After"
# QStash caps any retry delay at one day, and ignores a longer Retry-After.
_MAX_RETRY_AFTER_SECONDS = 86_400
_DEDUP_TABLE_VARIABLE = "QSTASH_DEDUP_TABLE"
_DEDUP_TTL_VARIABLE = "QSTASH_DEDUP_TTL"
# How long a handled message is remembered: QStash's longest default schedule (20 retries,
# min(1 day, e^(2.5 n) s) apart) spans about 16.3 days; 30 days outlives it with room to spare.
_DEFAULT_DEDUP_TTL_SECONDS = 30 * 86_400
# A claim outside Lambda (no remaining time to go by) lasts as long as Lambda's longest run.
_DEFAULT_LEASE_SECONDS = 900
_STORE_RETRY_SECONDS = 10
# Longer message ids are keyed by their SHA-256 (DynamoDB keys hold at most 2,048 bytes).
_MAX_KEYED_ID = 256
# Upstash-Message-Id and Upstash-Retried are not signed: bounded before they are logged or counted.
_MAX_LOGGED_ID = 128
_MAX_RETRY_DIGITS = 9

# The header every QStash token carries; recognising its exact bytes skips a JSON parse.
_QSTASH_HEADER = b'{"alg":"HS256","typ":"JWT"}'
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Unpadded segments of length 4n+2 and 4n+3 end in a character whose 4 or 2 low bits are unused.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_JSON_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# json.dumps's own C encoder, made once: json.dumps builds one for every call, which costs as much again.
_JSON_ENCODE: Callable[[Any, int], tuple[str, ...]] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
)
_SHA256_BLOCK_BYTES = 64
_XOR_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_XOR_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))
_ABSENT = object()  # no value: a claim the payload does not have, text that is no JSON


class Reason(str, enum.Enum):
    """Why a delivery was rejected: the stable, machine-readable ``SignatureError.reason``."""

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_TOKEN = "malformed_token"
    WRONG_ALGORITHM = "wrong_algorithm"
    BAD_SIGNATURE = "bad_signature"
    INVALID_CLAIMS = "invalid_claims"
    WRONG_ISSUER = "wrong_issuer"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    URL_MISMATCH = "url_mismatch"
    BODY_MISMATCH = "body_mismatch"
    REPLAYED = "replayed"

    def __str__(self) -> str:
        return self.value


class SignatureError(Exception):
    """A delivery failed verification; ``reason`` is a ``Reason``.

    Neither the message nor anything reachable from the exception holds a
    signing key, the token or the body.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self._message = message

    def __reduce__(self) -> tuple[type[SignatureError], tuple[Reason, str]]:
        return type(self), (self.reason, self._message)


class ConfigurationError(ValueError):
    """Signing keys or settings are missing or invalid; ``variable`` names the culprit."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable

    def __reduce__(self) -> tuple[Any, ...]:
        return _configuration_error, (str(self), self.variable)


def _configuration_error(message: str, variable: str | None) -> ConfigurationError:
    return ConfigurationError(message, variable=variable)


class EventError(ValueError):
    """A Lambda event or WSGI/ASGI request cannot be read as the HTTP request QStash sent."""


class NonRetryableError(Exception):
    """Raise from your handler to stop QStash retrying: it answers 489 and the
    message goes to the dead-letter queue.  Its text is sent back in the answer."""


class RetryLater(Exception):  # noqa: N818 -- a request to retry, not an error
    """Raise from your handler to have QStash retry after ``after``: seconds, or an aware datetime.

    The answer is 503 with ``Retry-After``.  Raises ValueError for a moment in the
    past or beyond QStash's one-day cap (which QStash would silently ignore),
    TypeError for anything else.
    """

    def __init__(self, after: float | datetime, *, now: float | None = None) -> None:
        seconds = _seconds_until(after, now)
        if not 0 <= seconds <= _MAX_RETRY_AFTER_SECONDS:
            raise ValueError(
                f"RetryLater takes 0 to {_MAX_RETRY_AFTER_SECONDS} seconds (QStash's cap), not {seconds:.0f}"
            )
        self.seconds = int(-(-seconds // 1))  # whole seconds, rounded up
        super().__init__(f"retry after {self.seconds} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.seconds,)


def _seconds_until(after: object, now: float | None) -> float:
    if type(after) in (int, float):  # not bool; NaN and infinities fail the range check after
        return after  # type: ignore[return-value]
    timestamp = getattr(after, "timestamp", None)
    if timestamp is None or getattr(after, "tzinfo", None) is None:
        raise TypeError("RetryLater takes seconds, or a datetime with a time zone")
    return timestamp() - _current_time(now)  # type: ignore[no-any-return]


class DedupUnavailable(RetryLater):
    """The de-duplication store could not be reached or throttled: nothing ran, QStash retries."""

    def __init__(self, message: str) -> None:
        super().__init__(_STORE_RETRY_SECONDS)
        self.args = (message,)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), self.args


class Claims(NamedTuple):
    """The verified claims of a QStash token (read-only).

    ``subject`` is the ``sub`` claim (the destination URL), ``body_hash`` the
    ``body`` claim; times are seconds since the epoch.
    """

    issuer: str
    subject: str
    body_hash: str
    expires_at: float
    not_before: float
    issued_at: float | None
    jwt_id: str | None


def _encoded(text: str, encoding: str, errors: str = "strict") -> bytes | None:
    """``text`` encoded, or None when it cannot be: callers raise their own error, for a
    UnicodeEncodeError (even as an exception's context) would hold the whole text."""
    try:
        return text.encode(encoding, errors)
    except UnicodeEncodeError:
        return None


# --- token parsing -----------------------------------------------------------------


def _b64url_decode(segment: bytes) -> bytes:
    return binascii.a2b_base64(segment.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(segment) % 4))


def _b64url_encode(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_STANDARD_TO_URLSAFE).rstrip(b"=")


_QSTASH_HEADER_SEGMENT = _b64url_encode(_QSTASH_HEADER)


def _check_segment(segment: bytes) -> None:
    """Raise SignatureError unless ``segment`` is non-empty, unpadded, canonical base64url."""
    tail = len(segment) % 4
    if not segment or tail == 1:
        raise SignatureError(Reason.MALFORMED_TOKEN, "a token segment has an impossible base64url length")
    # A last character carrying non-zero unused bits would give one token many spellings.
    if tail and segment[-1] not in _CANONICAL_LAST[tail]:
        raise SignatureError(Reason.MALFORMED_TOKEN, "a token segment is not canonical base64url")


def _token_bytes(signature: object) -> bytes:
    if signature is None:
        raise SignatureError(Reason.MISSING_SIGNATURE, "no Upstash-Signature header")
    if not isinstance(signature, str):
        raise SignatureError(Reason.MALFORMED_TOKEN, "the signature is not a string")
    if len(signature) > MAX_TOKEN_BYTES:
        raise SignatureError(Reason.MALFORMED_TOKEN, f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    if not signature.isascii():
        raise SignatureError(Reason.MALFORMED_TOKEN, "the token is not ASCII")
    return signature.encode("ascii")


def _parse_token(signature: object) -> tuple[bytes, bytes, bytes]:
    """Split a compact JWS and check its header; return (signing input, payload, MAC), both still base64url.

    Raises SignatureError if malformed.
    """
    raw = _token_bytes(signature)
    # Deleting the alphabet leaves exactly the two dots of three well-formed segments.
    if raw.translate(None, _BASE64URL_ALPHABET) != b"..":
        raise SignatureError(Reason.MALFORMED_TOKEN, "a token is three base64url segments joined by two dots")
    header, payload, mac = raw.split(b".")
    if header != _QSTASH_HEADER_SEGMENT:
        _check_segment(header)
        _check_header(_b64url_decode(header))
    _check_segment(payload)
    _check_segment(mac)
    return raw[: len(header) + 1 + len(payload)], payload, mac


def _json_value(raw: bytes) -> Any:
    """The JSON value of UTF-8 ``raw``, or _ABSENT when it has none (the errors would hold the text)."""
    try:
        text = raw.decode("utf-8")
        # The C scanner alone is twice as fast as json.loads; whatever it does not
        # consume whole (surrounding whitespace, errors) goes through json.loads.
        try:
            value, end = _JSON_SCAN(text, 0)
        except (StopIteration, ValueError):
            end = -1
        return value if end == len(text) else json.loads(text)
    except (ValueError, RecursionError):
        return _ABSENT


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    value = _json_value(raw)
    if value is _ABSENT:
        raise SignatureError(Reason.MALFORMED_TOKEN, f"the token {what} is not UTF-8 JSON")
    if not isinstance(value, dict):
        raise SignatureError(Reason.MALFORMED_TOKEN, f"the token {what} is not a JSON object")
    return value


def _check_header(raw: bytes) -> None:
    header = _json_object(raw, "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg != _ALGORITHM:
        raise SignatureError(Reason.WRONG_ALGORITHM, f"alg must be {_ALGORITHM}, got {alg!r:.20}")
    if "crit" in header:
        raise SignatureError(Reason.MALFORMED_TOKEN, "critical header extensions are not supported")


# --- claims --------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # bool is an int subclass, and NaN fails every comparison: both are rejected here.
    return type(value) in (int, float) and -_MAX_TIME_SECONDS <= value <= _MAX_TIME_SECONDS  # type: ignore[operator]


def _in_time_range(value: Any) -> bool:
    return value is None or _is_number(value)  # None: an optional time that is absent


_NUMBER = (int, float)
# (claim, accepted types, required), in Claims' field order: the one statement of the claim rules.
_CLAIM_RULES = (
    ("iss", (str,), True),
    ("sub", (str,), True),
    ("body", (str,), True),
    ("exp", _NUMBER, True),
    ("nbf", _NUMBER, True),
    ("iat", _NUMBER, False),
    ("jti", (str,), False),
)
_CLAIM_NAMES = tuple(name for name, _, _ in _CLAIM_RULES)
_OPTIONAL_CLAIMS = tuple(name for name, _, required in _CLAIM_RULES if not required)
_OPTIONALS = operator.itemgetter(*(index for index, (_, _, required) in enumerate(_CLAIM_RULES) if not required))
_TIMES = operator.itemgetter(*(index for index, (_, kinds, _) in enumerate(_CLAIM_RULES) if kinds is _NUMBER))
# Every well-typed combination (None: an optional claim that is absent), so the fast path is one set lookup.
_CLAIM_TYPES = frozenset(
    itertools.product(*(kinds if required else (*kinds, type(None)) for _, kinds, required in _CLAIM_RULES))
)


def _claim_error(raw: Mapping[str, Any]) -> SignatureError:
    """Name the first claim that breaks _CLAIM_RULES (the slow path of _parse_claims)."""
    for name, kinds, required in _CLAIM_RULES:
        value = raw.get(name, _ABSENT)
        if value is _ABSENT and not required:
            continue
        if type(value) not in kinds or (kinds is _NUMBER and not _is_number(value)):
            kind = "a finite number of seconds" if kinds is _NUMBER else "a string"
            return SignatureError(Reason.INVALID_CLAIMS, f"claim {name!r} must be {kind}")
    return SignatureError(Reason.INVALID_CLAIMS, "the claims are ill-typed")


def _parse_claims(payload: bytes) -> Claims:
    """Build Claims from a verified payload; raise SignatureError on a missing or ill-typed claim."""
    raw = _json_object(payload, "payload")
    claims = Claims._make(map(raw.get, _CLAIM_NAMES))
    well_typed = tuple(map(type, claims)) in _CLAIM_TYPES and all(map(_in_time_range, _TIMES(claims)))
    # None stood for an absent claim above; a claim that is present must not be null.
    if not well_typed or (None in _OPTIONALS(claims) and any(raw.get(n, _ABSENT) is None for n in _OPTIONAL_CLAIMS)):
        raise _claim_error(raw)
    if claims.issuer != _ISSUER:
        raise SignatureError(Reason.WRONG_ISSUER, f"iss must be {_ISSUER!r}, got {claims.issuer!r:.40}")
    return claims


def _check_time(claims: Claims, now: float, tolerance: float) -> None:
    if now >= claims.expires_at + tolerance:
        raise SignatureError(Reason.EXPIRED, f"the token expired at {claims.expires_at:.0f} (now {now:.0f})")
    if now < claims.not_before - tolerance:
        raise SignatureError(Reason.NOT_YET_VALID, f"the token is valid from {claims.not_before:.0f} (now {now:.0f})")


# --- URLs ----------------------------------------------------------------------------

# scheme, authority (None without "//"), and the rest: path, query, fragment.
_URL_PARTS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(?://([^/?#]*))?(.*)", re.S)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match[0][1:], 16))
    return char if char in _UNRESERVED else match[0].upper()


def _normal_authority(scheme: str, authority: str) -> str:
    userinfo, at, host = authority.rpartition("@")
    host = host.lower()
    port = _DEFAULT_PORTS.get(scheme)
    if port and host.endswith(port):
        host = host[: -len(port)]
    return userinfo + at + host


def _normal_url(url: str) -> str:
    """RFC 3986 section 6.2.2 normal form: case of scheme, host and escapes; unreserved escapes
    decoded; a default port and an empty path are the same as none and ``/``.  Nothing else."""
    parts = _URL_PARTS.fullmatch(url)
    if parts is None:
        return _PERCENT_ESCAPE.sub(_normal_escape, url)
    scheme, authority, rest = parts[1].lower(), parts[2], parts[3]
    if authority is None:
        return f"{scheme}:{_PERCENT_ESCAPE.sub(_normal_escape, rest)}"
    if not rest.startswith("/"):
        rest = "/" + rest
    return f"{scheme}://{_normal_authority(scheme, authority)}{_PERCENT_ESCAPE.sub(_normal_escape, rest)}"


def _check_url(subject: str, url: str) -> None:
    # URLs are public, so a plain comparison leaks nothing.
    if subject != url and _normal_url(subject) != _normal_url(url):
        raise SignatureError(
            Reason.URL_MISMATCH, f"the token was signed for {subject!r} but the request is for {url!r}"
        )


def _body_digest(body: bytes | bytearray | memoryview | str) -> bytes:
    """Return the unpadded base64url SHA-256 of the body, the way QStash writes it."""
    if isinstance(body, str):
        encoded = _encoded(body, "utf-8")
        if encoded is None:
            raise SignatureError(Reason.BODY_MISMATCH, "the body is not encodable as UTF-8")
        body = encoded
    elif isinstance(body, memoryview) and not body.c_contiguous:
        body = body.tobytes()  # hashlib takes only contiguous buffers
    return _b64url_encode(hashlib.sha256(body).digest())


def _check_body(body_hash: str, body: bytes | bytearray | memoryview | str) -> None:
    claimed = body_hash.rstrip("=").encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(_body_digest(body), claimed):
        raise SignatureError(Reason.BODY_MISMATCH, "the body's SHA-256 differs from the signed one")


# --- arguments -----------------------------------------------------------------------


def _check_arguments(body: object, url: object, clock_tolerance: object) -> None:
    """Raise TypeError or ValueError for a caller's mistake (not for a bad delivery)."""
    if not isinstance(body, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"body must be bytes, bytearray, memoryview or str, not {type(body).__name__}")
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str or None, not {type(url).__name__}")
    if not _is_number(clock_tolerance) or clock_tolerance < 0:  # type: ignore[operator]
        raise ValueError("clock_tolerance must be a finite number of seconds >= 0")


def _current_time(now: float | None) -> float:
    if now is None:
        return time.time()
    if not _is_number(now):
        raise ValueError("now must be a finite number of seconds since the epoch")
    return now


def _key_bytes(key: object) -> bytes:
    if not isinstance(key, str) or not key:
        raise ConfigurationError("a signing key must be a non-empty string")
    # os.environ decodes with surrogateescape; this gives back the exact bytes.
    encoded = _encoded(key, "utf-8", "surrogateescape")
    if encoded is None:
        raise ConfigurationError("a signing key must be valid text (it holds a lone surrogate)")
    return encoded


# --- the receiver --------------------------------------------------------------------


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    Copying two SHA-256 states costs half of copying an OpenSSL 3 HMAC object;
    tests check every output against ``hmac.new``.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK_BYTES:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK_BYTES, b"\0")
        self._inner = hashlib.sha256(key.translate(_XOR_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_XOR_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Receiver:
    """Verifies QStash deliveries against the current and, while rotating, the next signing key.

    Same call shape as the official ``qstash.Receiver``; raises ``ConfigurationError``
    for an empty key.
    """

    def __init__(self, current_signing_key: str, next_signing_key: str | None = None) -> None:
        keys = [current_signing_key] if next_signing_key is None else [current_signing_key, next_signing_key]
        self._macs = tuple(_HmacSha256(_key_bytes(key)) for key in keys)

    def __repr__(self) -> str:
        return f"Receiver(<{len(self._macs)} signing keys>)"

    @classmethod
    def from_env(cls, *, region: str | None = None, environ: Mapping[str, str] | None = None) -> Receiver:
        """Build a Receiver from QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY.

        With QSTASH_REGION set, ``region`` (the request's Upstash-Region header,
        e.g. ``eu-central-1``) selects that region's keys; see README.md for the
        rules.  Raises ConfigurationError naming the missing or invalid variable,
        TypeError when ``region`` is not a str or None.
        """
        if region is not None and not isinstance(region, str):
            raise TypeError(f"region must be a str or None, not {type(region).__name__}")
        keys = _signing_keys(os.environ if environ is None else environ)
        return cls(*keys[_region_of(region)])

    def verify(
        self,
        *,
        signature: str | None,
        body: bytes | bytearray | memoryview | str,
        url: str | None = None,
        clock_tolerance: float = 0,
        now: float | None = None,
    ) -> Claims:
        """Verify one delivery and return its Claims.

        ``signature`` is the Upstash-Signature header, ``body`` the raw body (str is
        taken as UTF-8), ``url`` the URL QStash was asked to call (None skips that
        check), ``clock_tolerance`` seconds of allowed clock skew, ``now`` an
        injected clock for tests.  Raises SignatureError; TypeError or ValueError
        for arguments of the wrong type.
        """
        _check_arguments(body, url, clock_tolerance)
        moment = _current_time(now)
        signing_input, payload, mac = _parse_token(signature)
        self._check_signature(signing_input, mac)
        claims = _parse_claims(_b64url_decode(payload))
        _check_time(claims, moment, clock_tolerance)
        if url is not None:
            _check_url(claims.subject, url)
        _check_body(claims.body_hash, body)
        return claims

    def _check_signature(self, signing_input: bytes, mac: bytes) -> None:
        # Comparing base64url text is comparing MACs: canonical encoding is one-to-one.
        for key in self._macs:
            if hmac.compare_digest(_b64url_encode(key.digest(signing_input)), mac):
                return
        raise SignatureError(Reason.BAD_SIGNATURE, "the signature matches neither the current nor the next signing key")


# --- configuration -------------------------------------------------------------------

_REGION_KEY_VARIABLES = tuple(f"{r}_{v}" for r in _REGIONS for v in (_CURRENT_KEY_VARIABLE, _NEXT_KEY_VARIABLE))
# Every variable the Lambda adapter reads: its settings are rebuilt only when one of these changes.
_SETTINGS_VARIABLES = (
    _CURRENT_KEY_VARIABLE,
    _NEXT_KEY_VARIABLE,
    _REGION_VARIABLE,
    *_REGION_KEY_VARIABLES,
    _URL_VARIABLE,
    _BASE_URL_VARIABLE,
    _CLOCK_TOLERANCE_VARIABLE,
    _DEDUP_TABLE_VARIABLE,
    _DEDUP_TTL_VARIABLE,
    # What boto3 builds the table's client from, besides credentials (fixed for a Lambda container).
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def _optional(env: Mapping[str, str], variable: str) -> str:
    """The variable's value, '' when unset; raises ConfigurationError when it is not a string."""
    value = env.get(variable, "")
    if not isinstance(value, str):
        raise ConfigurationError(f"{variable} must be a string", variable=variable)
    return value


def _required(env: Mapping[str, str], variable: str) -> str:
    value = _optional(env, variable)
    if not value:
        raise ConfigurationError(f"{variable} is not set", variable=variable)
    return value


def _key_pair(env: Mapping[str, str], prefix: str) -> tuple[str, str] | None:
    """The current and next keys under ``prefix``; None when neither is set, an error when one is missing."""
    if not _optional(env, prefix + _CURRENT_KEY_VARIABLE) and not _optional(env, prefix + _NEXT_KEY_VARIABLE):
        return None
    return _required(env, prefix + _CURRENT_KEY_VARIABLE), _required(env, prefix + _NEXT_KEY_VARIABLE)


def _region_of(header: str | None) -> str | None:
    """The QStash region an Upstash-Region header names (``eu-central-1``), or None for any other value."""
    name = (header or "").strip().upper().replace("-", "_")
    return name if name in _REGIONS else None


def _primary_region(env: Mapping[str, str]) -> str:
    value = _optional(env, _REGION_VARIABLE)
    if value and _region_of(value) is None:
        raise ConfigurationError(f"{_REGION_VARIABLE} must be one of {', '.join(_REGIONS)}", variable=_REGION_VARIABLE)
    return _region_of(value) or ""


def _signing_keys(env: Mapping[str, str]) -> dict[str | None, tuple[str, str]]:
    """Map each region (None: no header, or one naming no QStash region) to its key pair.

    The whole configuration is checked whatever the request, so no header can cause
    a configuration error.  Raises ConfigurationError naming the variable.
    """
    primary = _primary_region(env)
    plain = _key_pair(env, "")
    # In multi-region mode a region without keys of its own uses the plain ones (as Upstash's SDKs do).
    own = {region: (_key_pair(env, f"{region}_") if primary else None) or plain for region in _REGIONS}
    fallback = own[primary] if primary else plain
    if fallback is None:
        variable = f"{primary}_{_CURRENT_KEY_VARIABLE}" if primary else _CURRENT_KEY_VARIABLE
        raise ConfigurationError(f"{variable} is not set", variable=variable)
    return {None: fallback, **{region: pair or fallback for region, pair in own.items()}}


# --- minting -------------------------------------------------------------------------


def sign(
    signing_key: str,
    *,
    url: str,
    body: bytes | bytearray | memoryview | str,
    now: float | None = None,
    ttl: int = DEFAULT_TTL_SECONDS,
    not_before: int = 0,
    jwt_id: str | None = None,
) -> str:
    """Return an Upstash-Signature token for ``url`` and ``body``, laid out as QStash signs them.

    For tests and local development.  Raises ConfigurationError for an empty key.
    """
    key = _key_bytes(signing_key)
    issued = int(_current_time(now))
    claims = {
        "iss": _ISSUER,
        "sub": url,
        "exp": issued + ttl,
        "nbf": not_before,
        "iat": issued,
        "jti": jwt_id or "jwt_" + _b64url_encode(os.urandom(18)).decode("ascii"),
        "body": (_body_digest(body) + b"=").decode("ascii"),
    }
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _QSTASH_HEADER_SEGMENT + b"." + payload
    return (signing_input + b"." + _b64url_encode(hmac.new(key, signing_input, hashlib.sha256).digest())).decode()


# --- handled once: replays refused, duplicates skipped --------------------------------


class _Record(NamedTuple):
    """What a store keeps under a key: a token seen, a message being handled, or one handled."""

    state: str  # "seen", "handling" or "handled"
    expires_at: float  # seconds since the epoch; a record past it counts as absent


class MemoryStore:
    """A store in this process's memory: for one long-running server, and for tests.

    Anything with more than one process (Lambda, gunicorn workers) needs ``DynamoDBStore``.
    """

    def __init__(self) -> None:
        import threading  # noqa: PLC0415 -- only when a store is made

        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()
        self._pruned_size = 1024

    def put_unless_live(self, key: str, record: _Record, now: float) -> _Record | None:
        """Store ``record`` unless a live one is there; return that one, or None when stored."""
        with self._lock:
            existing = self._records.get(key)
            if existing is not None and existing.expires_at > now:
                return existing
            if len(self._records) > 2 * self._pruned_size:
                self._prune(now)
            self._records[key] = record
            return None

    def _prune(self, now: float) -> None:
        # Dead records go now and then, so memory follows the live ones, not the traffic.
        self._records = {k: r for k, r in self._records.items() if r.expires_at > now}
        self._pruned_size = max(1024, len(self._records))

    def replace(self, key: str, record: _Record) -> None:
        with self._lock:
            self._records[key] = record

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)


class DynamoDBStore:
    """A DynamoDB table (partition key ``id``, a string; TTL attribute ``expires_at``) shared by every process.

    ``client`` defaults to ``boto3.client("dynamodb")``, configured by the standard AWS
    environment (``AWS_ENDPOINT_URL_DYNAMODB`` included); boto3 is imported only here.
    Every failure of the table raises DedupUnavailable.
    """

    def __init__(self, table: str, *, client: Any = None) -> None:
        self._table = table
        self._client = _dynamodb_client() if client is None else client

    def put_unless_live(self, key: str, record: _Record, now: float) -> _Record | None:
        """Store ``record`` unless a live one is there; return that one, or None when stored (one request)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_dynamodb_item(key, record),
                ConditionExpression="attribute_not_exists(id) OR expires_at <= :now",
                ExpressionAttributeValues={":now": {"N": repr(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as err:  # noqa: BLE001 -- botocore's errors are not importable here
            response = getattr(err, "response", None) or {}
            if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise self._unavailable(err) from None
            return _record_of(response.get("Item") or {})
        return None

    def replace(self, key: str, record: _Record) -> None:
        self._call("put_item", TableName=self._table, Item=_dynamodb_item(key, record))

    def delete(self, key: str) -> None:
        self._call("delete_item", TableName=self._table, Key={"id": {"S": key}})

    def _call(self, operation: str, **arguments: Any) -> None:
        try:
            getattr(self._client, operation)(**arguments)
        except Exception as err:  # noqa: BLE001 -- any failure of the table is the same to us
            raise self._unavailable(err) from None

    def _unavailable(self, error: Exception) -> DedupUnavailable:
        return DedupUnavailable(f"the table {self._table} failed: {type(error).__name__}")


def _dynamodb_client() -> Any:
    try:
        import boto3  # noqa: PLC0415 -- in every Lambda runtime; only needed with a table
        from botocore.config import Config  # noqa: PLC0415
    except ImportError:
        variable = _DEDUP_TABLE_VARIABLE
        raise ConfigurationError(f"{variable} is set but boto3 is not installed", variable=variable) from None
    # Fail fast: a table that does not answer must not eat the Lambda's time.
    config = Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 2, "mode": "standard"})
    return boto3.client("dynamodb", config=config)


def _dynamodb_item(key: str, record: _Record) -> dict[str, Any]:
    # Whole seconds, as TTL wants them: a claim rounded down (it never outlasts the Lambda that
    # holds it), everything else rounded up (it is never forgotten early).
    seconds = int(record.expires_at) + (record.state != "handling")
    return {"id": {"S": key}, "state": {"S": record.state}, "expires_at": {"N": str(seconds)}}


def _record_of(item: Mapping[str, Any]) -> _Record:
    try:
        return _Record(item["state"]["S"], float(item["expires_at"]["N"]))
    except (KeyError, TypeError, ValueError):
        return _Record("handling", time.time() + _STORE_RETRY_SECONDS)  # unreadable: treat as busy


class Deduplicator:
    """Runs your code once per QStash message and refuses replayed tokens, with a store shared by your processes.

    ``ttl`` is how long a handled message is remembered (seconds); ``lease`` how long
    a claim holds when the caller gives none.  See ``begin`` and ``once``.
    """

    def __init__(
        self,
        store: MemoryStore | DynamoDBStore,
        *,
        ttl: float = _DEFAULT_DEDUP_TTL_SECONDS,
        lease: float = _DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._store, self._ttl, self._lease = store, ttl, lease

    def begin(
        self,
        claims: Claims,
        message_id: str | None,
        *,
        lease: float | None = None,
        clock_tolerance: float = 0,
        now: float | None = None,
    ) -> bool:
        """Claim a verified delivery: True to run your code, False for a message already handled.

        Raises SignatureError (``replayed``) for a token seen before, RetryLater while
        another process handles the message (until its lease ends), DedupUnavailable
        when the store fails.  Two store requests; then call ``succeeded`` or ``failed``.
        """
        moment = _current_time(now)
        token = _Record("seen", claims.expires_at + clock_tolerance)
        if self._store.put_unless_live(_token_key(claims), token, moment) is not None:
            raise SignatureError(Reason.REPLAYED, "this token was delivered before")
        if message_id is None:
            return True  # nothing to key on: run, as QStash would deliver it
        claim = _Record("handling", moment + (self._lease if lease is None else lease))
        existing = self._store.put_unless_live(_message_key(message_id), claim, moment)
        if existing is None:
            return True
        if existing.state == "handled":
            return False
        raise RetryLater(min(max(existing.expires_at - moment, 1), _MAX_RETRY_AFTER_SECONDS))

    def succeeded(self, message_id: str | None, *, now: float | None = None) -> None:
        """Remember the message as handled for ``ttl`` seconds (one store request)."""
        if message_id is not None:
            self._store.replace(_message_key(message_id), _Record("handled", _current_time(now) + self._ttl))

    def failed(self, message_id: str | None) -> None:
        """Release the claim, so QStash's retry runs your code again (one store request)."""
        if message_id is not None:
            self._store.delete(_message_key(message_id))

    def once(self, claims: Claims, message_id: str | None, **options: Any) -> _Once:
        """``with deduplicator.once(claims, message_id) as fresh: if fresh: ...``: begin, then
        succeeded when the block ends normally, failed when it raises."""
        return _Once(self, claims, message_id, options)


class _Once:
    def __init__(self, guard: Deduplicator, claims: Claims, message_id: str | None, options: dict[str, Any]) -> None:
        self._guard, self._claims, self._message_id, self._options = guard, claims, message_id, options
        self._claimed = False

    def __enter__(self) -> bool:
        self._claimed = self._guard.begin(self._claims, self._message_id, **self._options)
        return self._claimed

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if not self._claimed:
            return
        if kind is None:
            self._guard.succeeded(self._message_id, now=self._options.get("now"))
        else:
            self._guard.failed(self._message_id)


def _token_key(claims: Claims) -> str:
    # QStash gives every token a jti; one without is keyed by its claims, unique by exp and body.
    identity = claims.jwt_id if claims.jwt_id is not None else json.dumps(claims)
    return "token#" + _keyed(identity)


def _message_key(message_id: str) -> str:
    return "message#" + _keyed(message_id)


def _keyed(value: str) -> str:
    if len(value) <= _MAX_KEYED_ID and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


# --- the URL QStash called, rebuilt from a request -----------------------------------

# Bytes that never stand literally in an encoded path (and a "%" that starts no escape):
# escaping only these leaves an encoded path as it is and encodes a decoded one again.
_PATH_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~/:@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})")
# A decoded query key or value: also "&", "=", "+", "?" and "%" are data there.
_QUERY_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~/:@!$'()*,;]")
# A raw request target is kept as sent; only what cannot stand in a request line is escaped.
_TARGET_UNSAFE = re.compile(rb"[^!-~]")
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def _escape_byte(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def _percent_encode(raw: bytes, unsafe: re.Pattern[bytes]) -> str:
    return unsafe.sub(_escape_byte, raw).decode("ascii")


def _text_bytes(text: object, encoding: str, what: str) -> bytes:
    """``text`` as bytes; EventError (without the text) when it is not a str or not encodable."""
    if not isinstance(text, str):
        raise EventError(f"the request's {what} is not a string")
    encoded = _encoded(text, encoding)
    if encoded is None:
        raise EventError(f"the request's {what} is not valid text")
    return encoded


def _base_url(value: str, variable: str | None = None) -> str:
    """Check a public base URL (scheme, host, optional path prefix); return it without a trailing ``/``."""
    parts = _URL_PARTS.fullmatch(value) if isinstance(value, str) else None
    if parts is None or parts[1].lower() not in _DEFAULT_PORTS or not parts[2] or not set("?#").isdisjoint(parts[3]):
        name = variable or "base_url"
        raise ConfigurationError(f"{name} must be a URL like https://hooks.example.com[/prefix]", variable=variable)
    return value.rstrip("/")


def _hop(value: str, hops: int) -> str:
    """The entry that the ``hops``-th proxy before this server wrote in a comma-separated header."""
    entries = value.split(",")
    return entries[-hops].strip() if value and len(entries) >= hops else ""


def _forwarded(headers: Mapping[str, str], hops: int) -> tuple[str, str]:
    """(proto, host) from Forwarded (RFC 7239), else from X-Forwarded-Proto and X-Forwarded-Host."""
    element = _hop(headers.get(_FORWARDED_HEADER, ""), hops)
    if not element:
        return _hop(headers.get(_FORWARDED_PROTO_HEADER, ""), hops), _hop(headers.get(_FORWARDED_HOST_HEADER, ""), hops)
    pairs = (pair.strip().partition("=") for pair in element.split(";"))
    params = {name.lower(): value.strip('"') for name, _, value in pairs}
    return params.get("proto", ""), params.get("host", "")


def _request_url(
    scheme: str, host: str, target: str, *, headers: Mapping[str, str], base_url: str | None, trusted_proxies: int
) -> str:
    if type(trusted_proxies) is not int or trusted_proxies < 0:
        raise ValueError("trusted_proxies must be a whole number >= 0")
    if base_url is not None:
        return _base_url(base_url) + target
    if trusted_proxies:
        proto, forwarded_host = _forwarded(headers, trusted_proxies)
        scheme = proto.lower() if proto.lower() in _DEFAULT_PORTS else scheme
        host = forwarded_host if _HOST_NAME.fullmatch(forwarded_host) else host
    return f"{scheme}://{host}{target}"


def _request_headers(pairs: Iterable[tuple[object, object]]) -> dict[str, str]:
    """Headers with lower-cased names, repeated ones joined by commas; EventError unless all are text."""
    merged: dict[str, list[str]] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise EventError("the request's headers are not text")
        merged.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in merged.items()}


def _request_scheme(scheme: object) -> str:
    if not isinstance(scheme, str) or scheme not in _DEFAULT_PORTS:
        raise EventError("the request's scheme is neither http nor https")
    return scheme


def _wsgi_target(environ: Mapping[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return _percent_encode(_text_bytes(raw, "latin-1", "target"), _TARGET_UNSAFE)
    # PEP 3333: PATH_INFO holds the decoded path's bytes as latin-1 characters.
    path = b"".join(_text_bytes(environ.get(name, ""), "latin-1", "path") for name in ("SCRIPT_NAME", "PATH_INFO"))
    query = _text_bytes(environ.get("QUERY_STRING", ""), "latin-1", "query")
    return _percent_encode(path, _PATH_UNSAFE) + (f"?{_percent_encode(query, _TARGET_UNSAFE)}" if query else "")


def url_from_wsgi(environ: Mapping[str, Any], *, base_url: str | None = None, trusted_proxies: int = 0) -> str:
    """Return the URL QStash called, from a WSGI environ (Flask's ``request.environ``, Django's ``request.META``).

    The path and query are the raw request target where the server keeps it
    (gunicorn's ``RAW_URI``, ``REQUEST_URI``), else SCRIPT_NAME and PATH_INFO
    encoded again.  ``base_url`` (e.g. QSTASH_BASE_URL: public scheme, host and
    an optional path prefix) replaces the scheme and host the server saw;
    ``trusted_proxies`` is how many proxies in front of the server set
    Forwarded or X-Forwarded-Proto/-Host (0: those headers are ignored).
    Raises EventError for an environ it cannot read, ConfigurationError for a bad ``base_url``.
    """
    headers = _request_headers(
        (key[5:].replace("_", "-"), value) for key, value in environ.items() if key[:5] == "HTTP_"
    )
    host = headers.get(_HOST_HEADER) or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    scheme = _request_scheme(environ.get("wsgi.url_scheme", "http"))
    target = _wsgi_target(environ)
    return _request_url(scheme, host, target, headers=headers, base_url=base_url, trusted_proxies=trusted_proxies)


def _asgi_target(scope: Mapping[str, Any]) -> str:
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path.startswith(b"/"):
        path = _percent_encode(raw_path, _TARGET_UNSAFE)
    else:  # the decoded path, which includes root_path
        path = _percent_encode(_text_bytes(scope.get("path", "/"), "utf-8", "path"), _PATH_UNSAFE)
    query = scope.get("query_string") or b""
    if not isinstance(query, bytes):
        raise EventError("the request's query_string is not bytes")
    return path + (f"?{_percent_encode(query, _TARGET_UNSAFE)}" if query else "")


def url_from_asgi(scope: Mapping[str, Any], *, base_url: str | None = None, trusted_proxies: int = 0) -> str:
    """Return the URL QStash called, from an ASGI HTTP scope (Starlette's and FastAPI's ``request.scope``).

    The path is the scope's ``raw_path`` (else ``path`` encoded again), then
    ``query_string``; ``base_url`` and ``trusted_proxies`` as for ``url_from_wsgi``.
    Raises EventError for a scope it cannot read, ConfigurationError for a bad ``base_url``.
    """
    pairs = scope.get("headers") or ()
    if not isinstance(pairs, (list, tuple)) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(part, bytes) for part in pair)
        for pair in pairs
    ):
        raise EventError("the request's headers are not pairs of bytes")
    headers = _request_headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in pairs)
    server = scope.get("server")
    listening = f"{server[0]}:{server[1]}" if isinstance(server, (list, tuple)) and len(server) == 2 else "localhost"
    host = headers.get(_HOST_HEADER) or listening
    target = _asgi_target(scope)
    scheme = _request_scheme(scope.get("scheme", "http"))
    return _request_url(scheme, host, target, headers=headers, base_url=base_url, trusted_proxies=trusted_proxies)


# --- AWS Lambda: the request -----------------------------------------------------------


class HttpRequest(NamedTuple):
    """An HTTP request rebuilt from a Lambda event (not yet verified).

    ``headers`` has lower-cased names; ``body`` is the raw bytes the client sent;
    ``url`` is the public URL as well as the event can tell it; ``door`` names the
    front door (``function_url``, ``http_api_v2``, ``http_api_v1``, ``rest_api``,
    ``alb`` or ``alb_multi_value``).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    door: str


class Message(NamedTuple):
    """A verified QStash delivery, as handed to your handler.

    The signature covers ``body`` and ``url`` (and ``claims``); ``headers``, and so
    ``message_id`` and ``retried``, are not signed.
    """

    body: bytes
    headers: Mapping[str, str]
    url: str
    claims: Claims

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (raises UnicodeDecodeError if it is not)."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not)."""
        return json.loads(self.body)

    @property
    def message_id(self) -> str | None:
        """The Upstash-Message-Id header: not signed, so anyone replaying a token can choose it."""
        return self.headers.get(_MESSAGE_ID_HEADER)

    @property
    def retried(self) -> int:
        """How many times QStash has retried this message (Upstash-Retried, not signed), 0 at first."""
        return _retry_count(self.headers)

    def callback(self) -> Callback:
        """The body read as a callback or failure-callback envelope; raises EventError when it is not one."""
        envelope = _json_value(self.body)
        if not isinstance(envelope, dict):
            raise EventError("not a QStash callback: the body is not a JSON object")
        return _callback(envelope)


class Callback(NamedTuple):
    """A callback or failure-callback envelope from QStash: the answer to an earlier message.

    Bodies are bytes (QStash sends them base64-encoded), times seconds since the epoch,
    headers lists of values.  Signed, as the whole body is.
    """

    status: int
    header: Mapping[str, list[str]]
    body: bytes
    retried: int
    max_retries: int
    dlq_id: str | None
    source_message_id: str | None
    topic_name: str | None
    endpoint_name: str | None
    url: str | None
    method: str | None
    source_header: Mapping[str, list[str]]
    source_body: bytes
    not_before: float | None
    created_at: float | None
    schedule_id: str | None
    caller_ip: str | None

    @property
    def is_failure(self) -> bool:
        """A failure callback: every retry failed and the message is in the dead-letter queue (``dlq_id``)."""
        return self.dlq_id is not None

    @property
    def retries_exhausted(self) -> bool:
        """QStash will not retry the source message again."""
        return self.retried >= self.max_retries


def _envelope_field(envelope: Mapping[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    value = envelope.get(name)
    if value is None and not required:
        return None
    if type(value) is not kind:
        raise EventError(f"not a QStash callback: {name!r} must be a {kind.__name__}")
    return value


def _envelope_bytes(envelope: Mapping[str, Any], name: str) -> bytes:
    decoded = _base64_decoded(_envelope_field(envelope, name, str) or "")
    if decoded is None:
        raise EventError(f"not a QStash callback: {name!r} is not base64")
    return decoded


def _envelope_header(envelope: Mapping[str, Any], name: str) -> dict[str, list[str]]:
    header = _envelope_field(envelope, name, dict) or {}
    values = {key: value if isinstance(value, list) else [value] for key, value in header.items()}
    if not all(isinstance(item, str) for items in values.values() for item in items):
        raise EventError(f"not a QStash callback: {name!r} must map names to strings")
    return values


def _envelope_time(envelope: Mapping[str, Any], name: str) -> float | None:
    value = envelope.get(name)  # milliseconds, as a number or (in Upstash's examples) a string
    if value is None:
        return None
    milliseconds = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if not _is_number(milliseconds):
        raise EventError(f"not a QStash callback: {name!r} must be milliseconds since the epoch")
    return milliseconds / 1000


def _text(envelope: Mapping[str, Any], name: str) -> str | None:
    return _envelope_field(envelope, name, str)  # type: ignore[no-any-return]


def _count(envelope: Mapping[str, Any], name: str) -> int:
    return _envelope_field(envelope, name, int, required=True)  # type: ignore[no-any-return]


def _source_id(envelope: Mapping[str, Any], name: str) -> str | None:
    # Upstash's examples spell it sourceMessasgeId; both spellings are read.
    return _text(envelope, name) or _text(envelope, "sourceMessasgeId")


# The envelope's name for each of Callback's fields, in their order, and how it is read.
_CALLBACK_FIELDS: tuple[tuple[str, Callable[[Mapping[str, Any], str], Any]], ...] = (
    ("status", _count),
    ("header", _envelope_header),
    ("body", _envelope_bytes),
    ("retried", _count),
    ("maxRetries", _count),
    ("dlqId", _text),
    ("sourceMessageId", _source_id),
    ("topicName", _text),
    ("endpointName", _text),
    ("url", _text),
    ("method", _text),
    ("sourceHeader", _envelope_header),
    ("sourceBody", _envelope_bytes),
    ("notBefore", _envelope_time),
    ("createdAt", _envelope_time),
    ("scheduleId", _text),
    ("callerIP", _text),
)


def _callback(envelope: Mapping[str, Any]) -> Callback:
    return Callback._make(read(envelope, name) for name, read in _CALLBACK_FIELDS)


def _retry_count(headers: Mapping[str, str]) -> int:
    value = headers.get(_RETRIED_HEADER, "0").strip()
    # Anything but a plain, short count reads as 0.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS else 0


def _field(mapping: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = mapping.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise EventError(f"event field {name!r} is not a {kind.__name__}")
    return value


def _event_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Merge headers or multiValueHeaders into one dict with lower-cased names, in linear time."""
    multi = _field(event, "multiValueHeaders", dict, {})
    if not multi:  # the usual event: one string per name, and no two names differing in case only
        single = _field(event, "headers", dict, {})
        lowered = {name.lower(): value for name, value in single.items() if type(name) is str and type(value) is str}
        if len(lowered) == len(single):
            return lowered
    pairs = multi.items() if multi else single.items()
    return _request_headers(
        (name, item) for name, value in pairs for item in (value if isinstance(value, list) else [value])
    )


def _base64_decoded(text: str) -> bytes | None:
    """The bytes of ``text`` if it is exactly padded standard base64 (``[A-Za-z0-9+/]*={0,2}``,
    length divisible by 4), else None.  binascii skips any other character and stops at padding,
    so all 6 bits of every character but the trailing "=" are decoded only when ``text`` is that:
    one pass on every Python, over the str itself (a 6 MB body is not copied first)."""
    if len(text) % 4:
        return None
    try:
        decoded = binascii.a2b_base64(text)
    except ValueError:  # binascii.Error, or a character beyond ASCII
        return None
    padding = text.endswith("=") + text.endswith("==")
    return decoded if len(decoded) == len(text) // 4 * 3 - padding else None


def _event_body(event: Mapping[str, Any]) -> bytes:
    body = _field(event, "body", str, "")
    if event.get("isBase64Encoded") is not True:
        return _text_bytes(body, "utf-8", "body")
    decoded = _base64_decoded(body)
    if decoded is None:
        raise EventError("isBase64Encoded is true but the body is not base64")
    return decoded


def _query_parameters(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    multi = _field(event, "multiValueQueryStringParameters", dict, {})
    pairs = [(k, v) for k, values in multi.items() for v in (values if isinstance(values, list) else [values])]
    pairs = pairs or list(_field(event, "queryStringParameters", dict, {}).items())
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise EventError("event query parameters must map strings to strings")
    return pairs


def _v2_target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    # HTTP APIs hand over rawPath decoded, Function URLs encoded: encoding again serves both.
    path = _percent_encode(_text_bytes(_field(event, "rawPath", str, "/"), "utf-8", "path"), _PATH_UNSAFE)
    return path, _field(event, "rawQueryString", str, "")


def _v1_target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    # requestContext.path carries the stage; parameters arrive decoded and are encoded again.
    path = _field(context, "path", str) or _field(event, "path", str, "/")
    pairs = [(_text_bytes(k, "utf-8", "query"), _text_bytes(v, "utf-8", "query")) for k, v in _query_parameters(event)]
    query = "&".join(f"{_percent_encode(k, _QUERY_UNSAFE)}={_percent_encode(v, _QUERY_UNSAFE)}" for k, v in pairs)
    return _percent_encode(_text_bytes(path, "utf-8", "path"), _PATH_UNSAFE), query


def _alb_target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    # An ALB passes the path and the query values undecoded: kept verbatim.
    return _field(event, "path", str, "/"), "&".join(f"{k}={v}" for k, v in _query_parameters(event))


class _Door(NamedTuple):
    """A front door: how to know its events, where they keep the request target, and what its answer
    must look like.  Adding a front door is adding one of these to _DOORS."""

    name: str
    knows: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]  # (event, requestContext) -> is it ours
    target: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, str]]
    status_description: bool = False
    multi_value_headers: bool = False


def _is_v2(event: Mapping[str, Any]) -> bool:
    return event.get("version") == "2.0" and "rawPath" in event


def _is_function_url(event: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    domain = context.get("domainName")
    return _is_v2(event) and isinstance(domain, str) and ".lambda-url." in domain


# Tried in this order: the commonest first, and each door before the one it is a particular case of.
_DOORS = (
    _Door("function_url", _is_function_url, _v2_target),
    _Door("http_api_v2", lambda e, c: _is_v2(e), _v2_target),
    _Door("alb_multi_value", lambda e, c: "elb" in c and "multiValueHeaders" in e, _alb_target, True, True),
    _Door("alb", lambda e, c: "elb" in c, _alb_target, status_description=True),
    _Door("http_api_v1", lambda e, c: "httpMethod" in e and e.get("version") == "1.0", _v1_target),
    _Door("rest_api", lambda e, c: "httpMethod" in e, _v1_target),
)


def _door_of(event: object) -> _Door | None:
    """The front door an event came through, or None when it is no HTTP event."""
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return None
    context = event["requestContext"]
    for door in _DOORS:
        if door.knows(event, context):
            return door
    return None


def _event_url(headers: Mapping[str, str], context: Mapping[str, Any], path: str, query: str) -> str:
    scheme = headers.get(_FORWARDED_PROTO_HEADER, "https").split(",")[0].strip().lower()
    host = headers.get(_HOST_HEADER) or _field(context, "domainName", str, "")
    if not host:
        raise EventError("the event has neither a Host header nor requestContext.domainName")
    scheme = scheme if scheme in _DEFAULT_PORTS else "https"
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def _http_method(event: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    method = _field(event, "httpMethod", str) or _field(_field(context, "http", dict, {}), "method", str, "")
    return method.upper()  # type: ignore[no-any-return]


def _parse(event: dict[str, Any], door: _Door) -> HttpRequest:
    context = event["requestContext"]
    path, query = door.target(event, context)
    headers = types.MappingProxyType(_event_headers(event))
    url = _event_url(headers, context, path, query)
    return HttpRequest(_http_method(event, context), url, headers, _event_body(event), door.name)


def parse_lambda_event(event: object) -> HttpRequest:
    """Rebuild the HTTP request from a Function URL, API Gateway (HTTP or REST API) or ALB event.

    Raises EventError for anything that is not such an event.
    """
    door = _door_of(event)
    if door is None:
        raise EventError("not an HTTP event from a Function URL, API Gateway or an ALB")
    return _parse(event, door)  # type: ignore[arg-type]


# --- AWS Lambda: settings, read once per container ------------------------------------


class _Settings(NamedTuple):
    """What the environment configures, built once and kept while it is unchanged."""

    receivers: Mapping[str | None, Receiver]
    url: str
    base_url: str
    clock_tolerance: float
    deduplicator: Deduplicator | None


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = _optional(env, variable)
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not _is_number(value) or value < 0:
        raise ConfigurationError(f"{variable} must be seconds >= 0", variable=variable)
    return value


def _deduplicator(env: Mapping[str, str]) -> Deduplicator | None:
    table = _optional(env, _DEDUP_TABLE_VARIABLE)
    ttl = _seconds(env, _DEDUP_TTL_VARIABLE, _DEFAULT_DEDUP_TTL_SECONDS)
    return Deduplicator(DynamoDBStore(table), ttl=ttl) if table else None


def _build_settings(env: Mapping[str, str]) -> _Settings:
    keys = _signing_keys(env)
    receivers = {pair: Receiver(*pair) for pair in set(keys.values())}
    base_url = _optional(env, _BASE_URL_VARIABLE)
    return _Settings(
        {region: receivers[pair] for region, pair in keys.items()},
        _optional(env, _URL_VARIABLE),
        base_url and _base_url(base_url, _BASE_URL_VARIABLE),
        _seconds(env, _CLOCK_TOLERANCE_VARIABLE, 0),
        _deduplicator(env),
    )


class _Cached(NamedTuple):
    settings: _Settings
    size: int  # len(env) when built: a variable added since changes it
    values: tuple[tuple[str, str], ...]  # the variables that were set, and their values


# One entry at most: the settings of the environment last seen.
_settings_cache: list[_Cached] = []


def _still_valid(cached: _Cached, env: Mapping[str, str]) -> bool:
    # Cheap enough for every request: os.environ.get costs ~1 µs for a missing variable, so only
    # the ones that were set are read again; one added (or removed) since changes len(env) too.
    # Not seen: one of ours added while an unrelated one is removed between two requests, which a
    # Lambda environment (fixed for a container's life) never does.
    if len(env) != cached.size:
        return False
    for name, value in cached.values:  # noqa: SIM110 -- a loop: ~3,000 instructions a request fewer than all()
        if env.get(name) != value:
            return False
    return True


def _settings(env: Mapping[str, str]) -> _Settings:
    """The settings for ``env``, rebuilt only when a variable they come from changed (key rotation)."""
    if _settings_cache and _still_valid(_settings_cache[0], env):
        return _settings_cache[0].settings
    settings = _build_settings(env)
    values = tuple((name, env[name]) for name in _SETTINGS_VARIABLES if env.get(name) is not None)
    _settings_cache[:] = [_Cached(settings, len(env), values)]
    return settings


def _rebased(url: str, base_url: str) -> str:
    """``url`` with its scheme and host replaced by ``base_url`` (which may add a path prefix)."""
    parts = _URL_PARTS.fullmatch(url)
    return base_url + parts[3] if parts else url


def _verify_request(request: HttpRequest, settings: _Settings, now: float | None) -> Message:
    receiver = settings.receivers[_region_of(request.headers.get(_REGION_HEADER))]
    url = settings.url or (_rebased(request.url, settings.base_url) if settings.base_url else request.url)
    claims = receiver.verify(
        signature=request.headers.get(_SIGNATURE_HEADER),
        body=request.body,
        url=url,
        clock_tolerance=settings.clock_tolerance,
        now=now,
    )
    return Message(request.body, request.headers, url, claims)


def verify_lambda_event(
    event: object, *, environ: Mapping[str, str] | None = None, now: float | None = None
) -> Message:
    """Verify a Lambda HTTP event and return the Message.

    Keys come from the environment (see ``Receiver.from_env``); the URL checked is
    QSTASH_URL when set, else the one rebuilt from the event (on QSTASH_BASE_URL
    when set).  Raises EventError, ConfigurationError or SignatureError.
    """
    return _verify_request(parse_lambda_event(event), _settings(os.environ if environ is None else environ), now)


# --- AWS Lambda: the answer and the log line -----------------------------------------


class _Answer(NamedTuple):
    status: int
    body: str
    headers: Mapping[str, str]
    is_base64: bool = False


_JSON_HEADERS = {_CONTENT_TYPE_HEADER: "application/json"}
_TEXT_HEADERS = {_CONTENT_TYPE_HEADER: "text/plain; charset=utf-8"}
_BINARY_HEADERS = {_CONTENT_TYPE_HEADER: "application/octet-stream"}


def _json_text(value: Any) -> str:
    """``json.dumps(value)``, twice as fast; raises TypeError for what JSON cannot hold."""
    return "".join(_JSON_ENCODE(value, 0))


def _json_answer(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] = _JSON_HEADERS) -> _Answer:
    return _Answer(status, _json_text(payload), headers)


def _render(reply: Any) -> _Answer:
    """Turn a handler's return value into an answer: None, str, bytes, JSON,
    or (status, any of those), or (status, any of those, headers)."""
    if isinstance(reply, tuple) and len(reply) in (2, 3) and type(reply[0]) is int and 100 <= reply[0] <= 599:
        answer = _render(reply[1])
        headers = {**answer.headers, **_checked_headers(reply[2])} if len(reply) == 3 else answer.headers
        return answer._replace(status=reply[0], headers=headers)
    if reply is None:
        return _Answer(200, "", {})
    if isinstance(reply, str):
        return _Answer(200, reply, _TEXT_HEADERS)
    if isinstance(reply, (bytes, bytearray)):
        return _Answer(200, binascii.b2a_base64(reply, newline=False).decode("ascii"), _BINARY_HEADERS, True)
    return _json_answer(200, reply)


def _checked_headers(headers: object) -> dict[str, str]:
    """A handler's response headers; TypeError (a handler error) for anything that is not str to str."""
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
        for k, v in headers.items()
    ):
        raise TypeError("response headers must map str to str, without line breaks")
    return headers


def _retry_answer(seconds: int, error: str) -> _Answer:
    return _json_answer(_RETRY_STATUS, {"error": error}, {**_JSON_HEADERS, _RETRY_AFTER_HEADER: str(seconds)})


class _Outcome(NamedTuple):
    """What verification and the handler decided: the answer, and why."""

    answer: _Answer
    outcome: str
    reason: str | None = None
    detail: str | None = None
    variable: str | None = None
    traceback: str | None = None


class _LogRecord(NamedTuple):
    """The one log line of an invocation: these fields, in this order (README.md lists them)."""

    status: int
    outcome: str
    reason: str | None
    detail: str | None
    variable: str | None
    traceback: str | None
    message_id: str | None
    retried: int | None
    door: str | None
    request_id: str | None
    duration_ms: float


def _run(handler: Handler, message: Message) -> _Outcome:
    try:
        answer = _render(handler(message))
    except NonRetryableError as err:
        headers = {**_JSON_HEADERS, _NON_RETRYABLE_HEADER: "true"}
        payload = {"error": "non_retryable", "message": str(err)}
        return _Outcome(_json_answer(_NON_RETRYABLE_STATUS, payload, headers), "non_retryable")
    except RetryLater as err:
        return _Outcome(_retry_answer(err.seconds, "retry_later"), "retry_later", detail=str(err))
    except Exception:  # noqa: BLE001 -- any failure of user code is a 500, so QStash retries.
        import traceback  # noqa: PLC0415 -- only on failure: keeps cold starts fast

        answer = _json_answer(500, {"error": "internal_error"})
        return _Outcome(answer, "handler_error", traceback=traceback.format_exc())
    return _Outcome(answer, "ok")


def _verified_run(
    request: HttpRequest, handler: Handler, env: Mapping[str, str], now: float | None, context: object
) -> _Outcome:
    try:
        settings = _settings(env)
        message = _verify_request(request, settings, now)
        if settings.deduplicator is not None:
            return _run_once(settings.deduplicator, handler, message, _lease(context), settings.clock_tolerance)
    except ConfigurationError as err:
        answer = _json_answer(500, {"error": "server_misconfigured"})
        return _Outcome(answer, "misconfigured", detail=str(err), variable=err.variable)
    except SignatureError as err:
        return _Outcome(_json_answer(401, {"error": err.reason.value}), "rejected", err.reason.value, str(err))
    except RetryLater as err:  # the store failed, or another container is handling this message
        error = "dedup_unavailable" if isinstance(err, DedupUnavailable) else "in_progress"
        return _Outcome(_retry_answer(err.seconds, error), error, detail=str(err))
    return _run(handler, message)


def _run_once(
    deduplicator: Deduplicator, handler: Handler, message: Message, lease: float | None, tolerance: float
) -> _Outcome:
    """Run the handler unless the message was handled already; release the claim unless it answered 2xx."""
    message_id = message.message_id
    if not deduplicator.begin(message.claims, message_id, lease=lease, clock_tolerance=tolerance):
        return _Outcome(_json_answer(200, {"duplicate": True}), "duplicate")
    outcome = _run(handler, message)
    try:
        if 200 <= outcome.answer.status < 300:
            deduplicator.succeeded(message_id)
        else:
            deduplicator.failed(message_id)
    except DedupUnavailable as err:  # the work is done or failed either way; the claim lapses with its lease
        return outcome._replace(detail=f"{outcome.detail or ''} not recorded: {err}".strip())
    return outcome


def _lease(context: object) -> float | None:
    """Seconds this invocation may still run (a claim lasts no longer), or None outside Lambda."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else None


def _outcome(
    event: object, door: _Door | None, handler: Handler, env: Mapping[str, str], *, now: float | None, context: object
) -> tuple[_Outcome, HttpRequest | None]:
    try:
        if door is None:
            raise EventError("not an HTTP event from a Function URL, API Gateway or an ALB")
        request = _parse(event, door)  # type: ignore[arg-type]
    except EventError as err:
        answer = _json_answer(400, {"error": "not_http_event", "message": str(err)})
        return _Outcome(answer, "bad_request", detail=str(err)), None
    return _verified_run(request, handler, env, now, context), request


def _log_record(
    outcome: _Outcome, request: HttpRequest | None, door: _Door | None, context: object, started: float
) -> _LogRecord:
    """The outcome and what the log adds: who sent it (unsigned headers), where, and how long it took."""
    headers = request.headers if request is not None else {}
    return _LogRecord._make(
        (
            outcome.answer.status,
            *outcome[1:],
            headers.get(_MESSAGE_ID_HEADER, "")[:_MAX_LOGGED_ID] or None,
            _retry_count(headers) if request is not None else None,
            door and door.name,
            _request_id(context),
            round((time.perf_counter() - started) * 1000, 3),
        )
    )


def _reason_phrase(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415 -- only ALBs want a phrase

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Non-Retryable Error" if status == _NON_RETRYABLE_STATUS else "Unknown"


def _response(door: _Door | None, answer: _Answer) -> dict[str, Any]:
    """Shape the answer as the front door requires; any other shape becomes a 502 there."""
    response: dict[str, Any] = {"statusCode": answer.status, "body": answer.body, "isBase64Encoded": answer.is_base64}
    if door is not None and door.multi_value_headers:
        response["multiValueHeaders"] = {name: [value] for name, value in answer.headers.items()}
    else:
        response["headers"] = dict(answer.headers)
    if door is not None and door.status_description:
        response["statusDescription"] = f"{answer.status} {_reason_phrase(answer.status)}"
    return response


def _request_id(context: object) -> str | None:
    request_id = getattr(context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) else None


def serve_lambda(
    event: object,
    handler: Handler,
    *,
    context: object = None,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a Lambda HTTP event, run ``handler(message)`` and return the Lambda response.

    401 with {"error": reason} for a rejected delivery, 400 for a non-HTTP event, 500
    when keys are not configured or the handler raises, 489 for NonRetryableError.
    Prints one JSON log line per request (with the request id of ``context``, the
    Lambda context), without keys, token or body.  Never raises.
    """
    started = time.perf_counter()
    door = _door_of(event)
    env = os.environ if environ is None else environ
    outcome, request = _outcome(event, door, handler, env, now=now, context=context)
    print(_json_text(_log_record(outcome, request, door, context, started)._asdict()), flush=True)
    return _response(door, outcome.answer)


# --- AWS Lambda: the log line as CloudWatch metrics (Embedded Metric Format) ----------

# A record counts under its outcome (and rejection reason) in CamelCase, these three renamed. The
# record's own members are lower case: no metric or dimension name here can shadow one.
_METRIC_NAMES = {"ok": "Handled", "rejected.replayed": "Replayed", "dedup_unavailable": "StoreUnavailable"}
_METRIC_DIMENSION = "FunctionName"
_DURATION_METRIC = "Duration"


def _metrics(record: Mapping[str, Any], namespace: str, function: str, now_ms: int) -> dict[str, Any]:
    """The members that make the log ``record`` an Embedded Metric Format document too: a count of 1
    named for its outcome (e.g. ``Handled``, ``Rejected.BadSignature``) and its ``Duration`` in ms, in
    ``namespace`` by ``function`` name (none if empty), at ``now_ms`` (ms since the epoch)."""
    outcome = record["outcome"] if record["reason"] is None else f"{record['outcome']}.{record['reason']}"
    name = _METRIC_NAMES.get(outcome) or outcome.title().replace("_", "")
    metrics = [{"Name": name, "Unit": "Count"}, {"Name": _DURATION_METRIC, "Unit": "Milliseconds"}]
    dimensions = [[_METRIC_DIMENSION] if function else []]
    return {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}],
        },
        _METRIC_DIMENSION: function,
        name: 1,
        _DURATION_METRIC: record["duration_ms"],
    }


# --- command line --------------------------------------------------------------------


def _read_body(args: Any) -> bytes:
    if args.body is not None:
        return args.body.encode("utf-8")  # type: ignore[no-any-return]
    if args.body_file != "-":
        with open(args.body_file, "rb") as file:
            return file.read()
    if sys.stdin is None:  # started with stdin closed
        raise OSError("no body: stdin is closed; give --body or --body-file")
    return sys.stdin.buffer.read()


def _cli_receiver(args: Any) -> Receiver:
    if args.next_key and not args.current_key:
        raise ConfigurationError("--next-key needs --current-key")
    if args.current_key:
        return Receiver(args.current_key, args.next_key or None)
    return Receiver.from_env(region=args.region)


def _cli_sign(args: Any) -> int:
    key = args.key or _required(os.environ, _CURRENT_KEY_VARIABLE)
    print(sign(key, url=args.url, body=_read_body(args), ttl=args.ttl))
    return 0


def _unverified_claims(signature: str) -> dict[str, Any] | None:
    """The token's payload, not trusted, or None if it cannot be read."""
    try:
        return _json_object(_b64url_decode(_parse_token(signature)[1]), "payload")
    except (SignatureError, ValueError):
        return None


def _issue_time(signature: str) -> float:
    """The token's iat, unverified: ``verify --at-issue`` checks the token as of that moment."""
    issued = (_unverified_claims(signature) or {}).get("iat")
    if not isinstance(issued, (int, float)) or not _is_number(issued):
        raise ValueError("--at-issue: the token has no readable iat claim")
    return issued


def _print_rejection(err: SignatureError, signature: str) -> None:
    print(f"rejected: {err}", file=sys.stderr)
    unverified = _unverified_claims(signature)
    try:
        text = json.dumps(unverified)
    except (ValueError, RecursionError):  # a forged payload nested too deep to print
        return
    if unverified is not None:
        print(f"unverified claims, for diagnosis only: {text}", file=sys.stderr)


def _cli_verify(args: Any) -> int:
    receiver = _cli_receiver(args)
    now = _issue_time(args.signature) if args.at_issue else None
    body = _read_body(args)
    try:
        claims = receiver.verify(
            signature=args.signature, body=body, url=args.url, clock_tolerance=args.clock_tolerance, now=now
        )
    except SignatureError as err:
        _print_rejection(err, args.signature)
        return 1
    if args.url is None:
        print("note: no --url given, so the URL was NOT checked", file=sys.stderr)
    result = {"verified": True, "url_checked": args.url is not None, "as_of": "issue" if now else "now"}
    print(json.dumps({**result, "claims": claims._asdict()}, indent=2))
    return 0


def _parser() -> Any:
    import argparse  # noqa: PLC0415 -- the CLI only: keeps `import qstash_verify` fast

    parser = argparse.ArgumentParser(prog="qstash_verify.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    signer = commands.add_parser("sign", help="print a token for a URL and body, as QStash would send it")
    signer.add_argument("--key", help=f"signing key (default: ${_CURRENT_KEY_VARIABLE})")
    signer.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="seconds the token is valid")
    verifier = commands.add_parser("verify", help="verify a token: print its claims, or the check that failed")
    verifier.add_argument("--signature", required=True, help="the Upstash-Signature header value")
    verifier.add_argument("--current-key", help=f"signing key (default: ${_CURRENT_KEY_VARIABLE})")
    verifier.add_argument("--next-key", help=f"next signing key, with --current-key (default: ${_NEXT_KEY_VARIABLE})")
    verifier.add_argument("--region", help="the Upstash-Region header, with QSTASH_REGION set")
    verifier.add_argument("--clock-tolerance", type=float, default=0.0, help="seconds of clock skew allowed")
    verifier.add_argument("--at-issue", action="store_true", help="check a captured token as of its iat (not now)")
    for command in (signer, verifier):
        command.add_argument("--url", required=command is signer, help="the URL QStash was asked to call")
        source = command.add_mutually_exclusive_group()
        source.add_argument("--body", help="the raw body as text")
        source.add_argument("--body-file", default="-", help="file holding the raw body ('-': stdin, the default)")
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 verified or signed, 1 rejected, 2 usage)."""
    args = _parser().parse_args(argv)
    try:
        return _cli_sign(args) if args.command == "sign" else _cli_verify(args)
    except (OSError, ValueError) as err:  # ConfigurationError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())
