"""Verify Upstash QStash webhook signatures with the standard library only.

QStash signs every delivery with an ``Upstash-Signature`` header: an HS256 JWT
whose claims bind the request to its destination URL (``sub``) and to the
SHA-256 of its raw body (``body``).  ``Receiver.verify`` checks all of it and
returns the verified ``Claims``, or raises ``SignatureError`` whose ``reason``
says which check failed::

    receiver = Receiver.from_env()          # QSTASH_*_SIGNING_KEY
    claims = receiver.verify(signature=header, body=raw_body, url=url_from_wsgi(environ))

Also here, one pipeline (verify, claim, your ``handle``, answer, one log record)
behind every door: the AWS Lambda adapter (``serve_lambda``, behind
``lambda_function.py``) and ``wsgi_app``/``asgi_app`` for any web framework or
server; handled-once stores (``Deduplicator`` with DynamoDB, Redis or memory);
``url_from_wsgi``/``url_from_asgi``; ``sign``, which mints tokens exactly as QStash
does (for tests); and a command line: ``python3 qstash_verify.py --help``.

One file, Python 3.9+, no dependencies: vendor it into any project.
"""

from __future__ import annotations

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)
__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
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
    "Lease",
    "MemoryStore",
    "Message",
    "NonRetryableError",
    "Reason",
    "Receiver",
    "RedisStore",
    "RetryLater",
    "SignatureError",
    "asgi_app",
    "parse_lambda_event",
    "serve_lambda",
    "sign",
    "url_from_asgi",
    "url_from_wsgi",
    "verify_lambda_event",
    "wsgi_app",
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
    # A verified message, and the guard and claim settled after the handler ran (a plain tuple: made per request).
    _Admitted = tuple["Message", "Deduplicator | None", "Lease | None"]
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
_METRICS_VARIABLE = "QSTASH_METRICS_NAMESPACE"
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
# Milliseconds since the epoch in a callback envelope: 2**53 has 16 digits.
_MAX_TIME_DIGITS = 16

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
    None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, False
)  # allow_nan False: NaN and Infinity are no JSON, and no answer may claim to be
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
# A triplet, or a "%" that starts none: matched in one pass over the original text.
_ESCAPE_OR_STRAY = re.compile(r"%(?:[0-9A-Fa-f]{2})?")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _normal_escape(match: re.Match[str]) -> str:
    if len(match[0]) == 1:
        # A stray "%" is marked "%%", so no character decoded after it can complete a new triplet
        # (``%2%46`` is not ``%2F``); a normal form holds no other "%%".
        return "%%"
    char = chr(int(match[0][1:], 16))
    return char if char in _UNRESERVED else match[0].upper()


def _normal_text(text: str) -> str:
    return _ESCAPE_OR_STRAY.sub(_normal_escape, text)


def _normal_authority(scheme: str, authority: str) -> str:
    userinfo, at, host = authority.rpartition("@")
    host = host.lower()
    port = _DEFAULT_PORTS.get(scheme)
    if port and host.endswith(port):
        host = host[: -len(port)]
    return userinfo + at + host


def _normal_url(url: str) -> str:
    """RFC 3986 section 6.2.2 normal form: case of scheme, host and escapes; well-formed triplets of
    unreserved characters decoded; a default port and an empty path are the same as none and ``/``."""
    parts = _URL_PARTS.fullmatch(url)
    if parts is None:
        return _normal_text(url)
    scheme, authority, rest = parts[1].lower(), parts[2], parts[3]
    if authority is None:
        return f"{scheme}:{_normal_text(rest)}"
    if not rest.startswith("/"):
        rest = "/" + rest
    return f"{scheme}://{_normal_authority(scheme, authority)}{_normal_text(rest)}"


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
        count = body.nbytes if isinstance(body, memoryview) else len(body)
        size = f"{count} {'characters' if isinstance(body, str) else 'bytes'}"  # a length is no secret
        raise SignatureError(Reason.BODY_MISMATCH, f"the SHA-256 of the body ({size}) differs from the signed one")


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
    _checked_key(key)
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
    _METRICS_VARIABLE,
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


def _checked_key(key: str, *, variable: str | None = None) -> str:
    """``key``, unless copying mangled it (it would fail every delivery as bad_signature).

    Raises ConfigurationError naming ``variable`` and the slip, never the key.
    """
    if key != key.strip():
        slip = "starts or ends with whitespace"
    elif key[0] in "\"'" or key[-1] in "\"'":
        slip = "starts or ends with a quote"
    elif re.search("[\x00-\x1f\x7f-\x9f]", key):
        slip = "holds a control character"
    else:
        return key
    name = variable or "a signing key"
    raise ConfigurationError(f"{name} {slip}: copy the key again without it", variable=variable)


def _key_pair(env: Mapping[str, str], prefix: str) -> tuple[str, str] | None:
    """The current and next keys under ``prefix``; None when neither is set, an error when one is missing."""
    current, following = prefix + _CURRENT_KEY_VARIABLE, prefix + _NEXT_KEY_VARIABLE
    if not _optional(env, current) and not _optional(env, following):
        return None
    current_key = _checked_key(_required(env, current), variable=current)
    return current_key, _checked_key(_required(env, following), variable=following)


def _region_of(header: str | None) -> str | None:
    """The QStash region an Upstash-Region header names (``eu-central-1``), or None for any other value."""
    name = (header or "").strip().upper().replace("-", "_")
    return name if name in _REGIONS else None


def _primary_region(env: Mapping[str, str]) -> str:
    """QSTASH_REGION, spelled exactly as Upstash's docs and the regional key variables spell it."""
    value = _optional(env, _REGION_VARIABLE)
    if value and value not in _REGIONS:
        message = f"{_REGION_VARIABLE} must be {' or '.join(_REGIONS)}, exactly (not the header's us-east-1)"
        raise ConfigurationError(message, variable=_REGION_VARIABLE)
    return value


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

_HANDLING, _HANDLED = "handling", "handled"
_CONDITION_FAILED = "ConditionalCheckFailedException"
_OWNER_BYTES = 16
# Seconds a claim holds when Lambda says no time remains: begin takes only positive leases.
_MIN_LEASE_SECONDS = 0.001
_INFINITY = float("inf")
# KEYS[1]: the record; ARGV: the owner, then the new value and its expiry in ms, or nothing to delete it.
_REDIS_SETTLE = """local v = redis.call('get', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then return 0 end
if ARGV[2] then redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3]) else redis.call('del', KEYS[1]) end
return 1"""


class _Record(NamedTuple):
    """What a store keeps under a key: a token seen, a message being handled, or one handled."""

    state: str  # "seen", "handling" or "handled"
    expires_at: float  # seconds since the epoch; a record past it counts as absent
    owner: str = ""  # the Lease.owner that wrote it


class Lease(NamedTuple):
    """A claim on a message, returned by ``Deduplicator.begin``: pass it to ``succeeded`` or ``failed``."""

    key: str | None  # the message record's key; None when the delivery has no message id
    owner: str  # random per claim: only its holder completes or releases it


def _busy(now: float) -> _Record:
    return _Record(_HANDLING, now + _STORE_RETRY_SECONDS)  # a record that cannot be read: retry later


def _unavailable(store: str, error: str, action: str) -> DedupUnavailable:
    return DedupUnavailable(f"{store} failed: {error} on {action}")  # never the error's text: it may hold items


class MemoryStore:
    """A store in this process's memory: for one long-running server, and for tests.

    Anything with more than one process (Lambda, gunicorn workers) needs ``DynamoDBStore`` or ``RedisStore``.
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

    def settle(self, key: str, owner: str, record: _Record | None, now: float) -> bool:
        """Replace ``owner``'s record with ``record``, or delete it (None); False when ``owner`` holds none."""
        with self._lock:
            if key not in self._records or self._records[key].owner != owner:
                return False
            if record is None:
                del self._records[key]
            else:
                self._records[key] = record
            return True


class DynamoDBStore:
    """A DynamoDB table (partition key ``id``, a string; TTL attribute ``expires_at``) shared by every process.

    ``client`` defaults to ``boto3.client("dynamodb")``, configured by the standard AWS
    environment (``AWS_ENDPOINT_URL_DYNAMODB`` included); boto3 is imported only here.
    Needs dynamodb:PutItem and dynamodb:DeleteItem.  Every failure of the table raises DedupUnavailable.
    """

    def __init__(self, table: str, *, client: Any = None) -> None:
        self._table = table
        self._client = _dynamodb_client() if client is None else client

    def put_unless_live(self, key: str, record: _Record, now: float) -> _Record | None:
        """Store ``record`` unless a live one is there; return that one, or None when stored (one request)."""
        old = self._write(
            "put_item",
            "attribute_not_exists(id) OR expires_at <= :now",
            {":now": {"N": repr(now)}},
            Item=_dynamodb_item(key, record),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return None if old is None else _record_of(old, now)

    def settle(self, key: str, owner: str, record: _Record | None, now: float) -> bool:
        """Replace ``owner``'s record with ``record``, or delete it (None); False when ``owner`` holds none."""
        operation, argument = ("delete_item", "Key") if record is None else ("put_item", "Item")
        item = {"id": {"S": key}} if record is None else _dynamodb_item(key, record)
        return self._write(operation, "holder = :owner", {":owner": {"S": owner}}, **{argument: item}) is None

    def _write(self, operation: str, condition: str, values: Any, **arguments: Any) -> Mapping[str, Any] | None:
        """None when written; the item there (maybe empty) when ``condition`` failed. Raises DedupUnavailable."""
        try:
            getattr(self._client, operation)(
                TableName=self._table, ConditionExpression=condition, ExpressionAttributeValues=values, **arguments
            )
        except Exception as err:  # noqa: BLE001 -- botocore's errors are not importable here
            code = (getattr(err, "response", None) or {}).get("Error", {}).get("Code")
            if code == _CONDITION_FAILED:
                return err.response.get("Item") or {}  # type: ignore[attr-defined]
            action = "dynamodb:" + operation.title().replace("_", "")
            raise _unavailable(f"the table {self._table}", str(code or type(err).__name__), action) from None
        return None


def _dynamodb_client() -> Any:
    """boto3's DynamoDB client; raises ConfigurationError naming the setting at fault (never its value)."""
    try:
        import boto3  # noqa: PLC0415 -- in every Lambda runtime; only needed with a table
        from botocore.config import Config  # noqa: PLC0415
    except ImportError:
        variable = _DEDUP_TABLE_VARIABLE
        raise ConfigurationError(f"{variable} is set but boto3 is not installed", variable=variable) from None
    # Fail fast: a table that does not answer must not eat the Lambda's time.
    config = Config(connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 2, "mode": "standard"})
    try:
        return boto3.client("dynamodb", config=config)
    except Exception as err:  # noqa: BLE001 -- the AWS settings are wrong: a bad endpoint URL, no region
        raise _client_error(type(err).__name__) from None


def _client_error(name: str) -> ConfigurationError:
    # boto3 reads the region from AWS_DEFAULT_REGION (Lambda sets it), not AWS_REGION.
    endpoint = next((v for v in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL") if v in os.environ), None)
    variable = "AWS_DEFAULT_REGION" if "Region" in name else endpoint
    where = variable or "the AWS configuration"
    return _configuration_error(f"the DynamoDB client cannot be built ({name}): check {where}", variable)


def _dynamodb_item(key: str, record: _Record) -> dict[str, Any]:
    # Whole seconds, as TTL wants them: a claim rounded down (it never outlasts the Lambda that
    # holds it), everything else rounded up (it is never forgotten early).
    seconds = int(record.expires_at) + (record.state != _HANDLING)
    return {
        "id": {"S": key},
        "state": {"S": record.state},
        "expires_at": {"N": str(seconds)},
        "holder": {"S": record.owner},
    }


def _record_of(item: Mapping[str, Any], now: float) -> _Record:
    try:
        return _Record(item["state"]["S"], float(item["expires_at"]["N"]))
    except (KeyError, TypeError, ValueError):
        return _busy(now)


class RedisStore:
    """A Redis server shared by every process, through ``client``: redis-py's ``Redis`` or one with its interface.

    Keys are ``prefix`` + the record's key, and expire with it.  A claim is one ``SET NX PX``;
    completion and release are owner-checked Lua (``EVAL``).  Every client error raises DedupUnavailable.
    """

    def __init__(self, client: Any, *, prefix: str = "qstash:") -> None:
        self._client, self._prefix = client, prefix

    def put_unless_live(self, key: str, record: _Record, now: float) -> _Record | None:
        """Store ``record`` unless a live one is there; return that one, or None when stored."""
        name = self._prefix + key
        if self._call("set", name, _redis_value(record), nx=True, px=_milliseconds(record, now)):
            return None
        try:
            owner, state, expires_at = _redis_text(self._call("get", name)).split(" ")
            return _Record(state, float(expires_at), owner)
        except (TypeError, ValueError):  # gone meanwhile, or not ours
            return _busy(now)

    def settle(self, key: str, owner: str, record: _Record | None, now: float) -> bool:
        """Replace ``owner``'s record with ``record``, or delete it (None); False when ``owner`` holds none."""
        value = () if record is None else (_redis_value(record), _milliseconds(record, now))
        return bool(self._call("eval", _REDIS_SETTLE, 1, self._prefix + key, owner, *value) == 1)

    def _call(self, command: str, *arguments: Any, **options: Any) -> Any:
        try:
            return getattr(self._client, command)(*arguments, **options)
        except Exception as err:  # noqa: BLE001 -- any failure of the server is the same to us
            raise _unavailable("Redis", type(err).__name__, command.upper()) from None


def _redis_value(record: _Record) -> str:
    return f"{record.owner} {record.state} {record.expires_at!r}"


def _milliseconds(record: _Record, now: float) -> int:
    return max(1, int((record.expires_at - now) * 1000))


def _redis_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise TypeError("no record")


def _positive(value: object, option: str) -> float:
    if type(value) not in _NUMBER or not 0 < value < _INFINITY:  # type: ignore[operator]  # NaN fails too
        raise ValueError(f"{option} must be a positive, finite number of seconds")
    return value  # type: ignore[return-value]


class Deduplicator:
    """Runs your code once per QStash message and refuses replayed tokens, with a store shared by your processes.

    ``ttl`` is how long a handled message is remembered (seconds); ``lease`` how long
    a claim holds when the caller gives none.  Both positive and finite, else ValueError.
    A message is recorded by its id and its signed body hash.  See ``begin`` and ``once``.
    """

    def __init__(
        self,
        store: MemoryStore | DynamoDBStore | RedisStore,
        *,
        ttl: float = _DEFAULT_DEDUP_TTL_SECONDS,
        lease: float = _DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._store, self._ttl, self._lease = store, _positive(ttl, "ttl"), _positive(lease, "lease")

    def begin(
        self,
        claims: Claims,
        message_id: str | None,
        *,
        lease: float | None = None,
        clock_tolerance: float = 0,
        now: float | None = None,
    ) -> Lease | None:
        """Claim a verified delivery: a Lease to run your code, None for a message already handled.

        Raises SignatureError (``replayed``) for a token seen before, RetryLater while
        another holder's lease is live, DedupUnavailable when the store fails, ValueError
        for a bad ``lease``.  Two store requests; then call ``succeeded`` or ``failed``.
        """
        moment = _current_time(now)
        seconds = self._lease if lease is None else _positive(lease, "lease")
        key = None if message_id is None else _message_key(message_id, claims.body_hash)
        held = Lease(key, os.urandom(_OWNER_BYTES).hex())
        token = _Record("seen", claims.expires_at + clock_tolerance, held.owner)
        if self._store.put_unless_live(_token_key(claims), token, moment) is not None:
            raise SignatureError(Reason.REPLAYED, "this token was delivered before")
        if key is None:
            return held  # nothing to key on: run, as QStash would deliver it
        existing = self._store.put_unless_live(key, _Record(_HANDLING, moment + seconds, held.owner), moment)
        if existing is None:
            return held
        if existing.state == _HANDLED:
            return None
        raise RetryLater(min(max(existing.expires_at - moment, 1), _MAX_RETRY_AFTER_SECONDS))

    def succeeded(self, lease: Lease, *, now: float | None = None) -> bool:
        """Remember the message as handled for ``ttl`` seconds: True unless the claim was lost (one request)."""
        moment = _current_time(now)
        return self._settle(lease, _Record(_HANDLED, moment + self._ttl, lease.owner), moment)

    def failed(self, lease: Lease) -> bool:
        """Release the claim, so QStash's retry runs your code: True unless it was lost (one request)."""
        return self._settle(lease, None, 0)

    def _settle(self, lease: Lease, record: _Record | None, now: float) -> bool:
        return lease.key is None or self._store.settle(lease.key, lease.owner, record, now)

    def once(self, claims: Claims, message_id: str | None, **options: Any) -> _Once:
        """``with deduplicator.once(claims, message_id) as fresh: if fresh: ...``: begin, then
        succeeded when the block ends normally, failed when it raises."""
        return _Once(self, claims, message_id, options)


class _Once:
    def __init__(self, guard: Deduplicator, claims: Claims, message_id: str | None, options: dict[str, Any]) -> None:
        self._guard, self._claims, self._message_id, self._options = guard, claims, message_id, options
        self._lease: Lease | None = None

    def __enter__(self) -> bool:
        self._lease = self._guard.begin(self._claims, self._message_id, **self._options)
        return self._lease is not None

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._lease is None:
            return
        if kind is None:
            self._guard.succeeded(self._lease, now=self._options.get("now"))
        else:
            self._guard.failed(self._lease)


def _token_key(claims: Claims) -> str:
    # QStash gives every token a jti; one without is keyed by its claims, unique by exp and body.
    identity = claims.jwt_id if claims.jwt_id is not None else json.dumps(claims)
    return "token#" + _keyed(identity)


def _message_key(message_id: str, body_hash: str) -> str:
    # The id is not signed: with the signed body hash beside it, no token makes another body a duplicate.
    return "message#" + _keyed(f"{message_id}#{body_hash}")


def _keyed(value: str) -> str:
    if len(value) <= _MAX_KEYED_ID and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


# --- the URL QStash called, rebuilt from a request -----------------------------------

# Bytes that never stand literally in a path: a decoded path is data, so its "%" is escaped too.
_PATH_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~/:@!$&'()*+,;=]")
# A decoded query key or value: also "&", "=", "+" and "?" are data there.
_QUERY_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~/:@!$'()*,;]")
# A raw request target is kept as sent; only what cannot stand in a request line is escaped.
_TARGET_UNSAFE = re.compile(rb"[^!-~]")
_TARGET_BYTES = bytes(range(ord("!"), ord("~") + 1))
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9._~\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Hosts already found valid: a Lambda container or a server sees a few, so most requests skip the regex.
_VALID_HOSTS: set[str] = set()
_MAX_VALID_HOSTS = 64
# The headers a deployment may say its proxies write (as Werkzeug's ProxyFix counts each one).
_PROXY_HEADERS = frozenset((_FORWARDED_HEADER, _FORWARDED_PROTO_HEADER, _FORWARDED_HOST_HEADER))


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


def _as_sent(raw: bytes) -> str:
    # Deleting the bytes a request line may hold leaves nothing in the usual target: no regex then.
    return raw.decode("ascii") if not raw.translate(None, _TARGET_BYTES) else _percent_encode(raw, _TARGET_UNSAFE)


def _as_is(text: str) -> bool:
    """Whether a raw target's text needs no escape: printable ASCII without spaces."""
    return text.isascii() and text.isprintable() and " " not in text


def _target(path: bytes, query: bytes, *, raw: bool) -> str:
    """The request target: a raw path kept as sent, a decoded one encoded again (its "%" too),
    and the query as sent.  The one place every door turns its path into a URL's."""
    encoded = _as_sent(path) if raw else _percent_encode(path, _PATH_UNSAFE)
    slash = "" if encoded.startswith("/") else "/"
    return slash + encoded + (f"?{_as_sent(query)}" if query else "")


class _Incoming(NamedTuple):
    """A request as a door read it: the URL not yet chosen (that takes the settings)."""

    method: str
    scheme: str
    host: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    door: str


def _base_url(value: object, variable: str | None = None) -> str:
    """Check a public base URL (scheme, host, optional path prefix); return it without a trailing ``/``."""
    parts = _URL_PARTS.fullmatch(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts[1].lower() not in _DEFAULT_PORTS
        or not _HOST_NAME.fullmatch(parts[2] or "")
        or not set("?#").isdisjoint(parts[3])
    ):
        name = variable or "base_url"
        raise ConfigurationError(f"{name} must be a URL like https://hooks.example.com[/prefix]", variable=variable)
    return parts[0].rstrip("/")


def _proxies(trusted: object) -> Mapping[str, int]:
    """Check ``trusted_proxies``: which forwarding headers the proxies write, and how many proxies write each."""
    if trusted is None:
        return {}
    if not isinstance(trusted, dict) or not all(
        isinstance(k, str) and k.lower() in _PROXY_HEADERS and type(n) is int and n > 0 for k, n in trusted.items()
    ):
        raise ValueError(
            "trusted_proxies maps the headers your proxies write to how many of them write each, "
            "e.g. {'x-forwarded-proto': 1}; names: forwarded, x-forwarded-proto, x-forwarded-host"
        )
    return {name.lower(): hops for name, hops in trusted.items()}


def _hop(headers: Mapping[str, str], name: str, proxies: Mapping[str, int]) -> str:
    """The entry that the first of the trusted proxies wrote in a header; '' for a header no proxy
    writes, or with fewer entries than proxies (a client's own value is never read)."""
    hops = proxies.get(name, 0)
    entries = headers.get(name, "").split(",") if hops else []
    return entries[-hops].strip() if hops and len(entries) >= hops else ""


def _forwarded(headers: Mapping[str, str], proxies: Mapping[str, int]) -> tuple[str, str]:
    """(proto, host) that the trusted proxies wrote: Forwarded (RFC 7239) first, then X-Forwarded-*."""
    element = _hop(headers, _FORWARDED_HEADER, proxies)
    pairs = (pair.strip().partition("=") for pair in element.split(";") if element)
    params = {name.lower(): value.strip('"') for name, _, value in pairs}
    proto = params.get("proto") or _hop(headers, _FORWARDED_PROTO_HEADER, proxies)
    return proto.lower(), params.get("host") or _hop(headers, _FORWARDED_HOST_HEADER, proxies)


def _origin(request: _Incoming, proxies: Mapping[str, int]) -> str:
    """``scheme://host`` of a request, from what its trusted proxies wrote; EventError for a bad host."""
    proto, host = _forwarded(request.headers, proxies) if proxies else ("", "")
    scheme = proto if proto in _DEFAULT_PORTS else request.scheme
    host = host or request.host
    if host not in _VALID_HOSTS:
        if not _HOST_NAME.fullmatch(host):
            raise EventError(f"the request's host {host[:64]!r} is not a valid host[:port]")
        if len(_VALID_HOSTS) < _MAX_VALID_HOSTS:
            _VALID_HOSTS.add(host)
    return f"{scheme}://{host}"


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
        return _target(_text_bytes(raw, "latin-1", "target"), b"", raw=True)
    # PEP 3333: PATH_INFO holds the decoded path's bytes as latin-1 characters.
    path = b"".join(_text_bytes(environ.get(name, ""), "latin-1", "path") for name in ("SCRIPT_NAME", "PATH_INFO"))
    return _target(path, _text_bytes(environ.get("QUERY_STRING", ""), "latin-1", "query"), raw=False)


def _wsgi_request(environ: Mapping[str, Any], body: bytes = b"") -> _Incoming:
    """Read a WSGI environ; EventError for one that cannot be read."""
    headers = _request_headers(
        (key[5:].replace("_", "-"), value) for key, value in environ.items() if key[:5] == "HTTP_"
    )
    host = headers.get(_HOST_HEADER) or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    scheme = _request_scheme(environ.get("wsgi.url_scheme", "http"))
    method = environ.get("REQUEST_METHOD", "GET")
    method = method.upper() if isinstance(method, str) else "GET"
    return _Incoming(method, scheme, host, _wsgi_target(environ), headers, body, "wsgi")


def _public_url(request: _Incoming, base_url: str | None, proxies: Mapping[str, int]) -> str:
    # With a base URL (checked by _base_url) nothing from Host or a forwarding header reaches the URL.
    return (base_url or _origin(request, proxies)) + request.target


def url_from_wsgi(
    environ: Mapping[str, Any], *, base_url: str | None = None, trusted_proxies: Mapping[str, int] | None = None
) -> str:
    """Return the URL QStash called, from a WSGI environ (Flask's ``request.environ``).

    The path and query are the raw request target where the server keeps it
    (gunicorn's ``RAW_URI``, ``REQUEST_URI``), else SCRIPT_NAME and PATH_INFO
    encoded again.  ``base_url`` (e.g. QSTASH_BASE_URL: public scheme, host and
    an optional path prefix) replaces the scheme and host the server saw.
    ``trusted_proxies`` names the forwarding headers your proxies write and how
    many proxies write each, e.g. ``{"x-forwarded-proto": 1}``; no other is read.
    Raises EventError for an environ it cannot read (a Host that is no host[:port]
    included), ConfigurationError for a bad ``base_url``, ValueError for bad ``trusted_proxies``.
    """
    return _public_url(_wsgi_request(environ), base_url and _base_url(base_url), _proxies(trusted_proxies))


def _asgi_target(scope: Mapping[str, Any]) -> str:
    query = scope.get("query_string") or b""
    if not isinstance(query, bytes):
        raise EventError("the request's query_string is not bytes")
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path.startswith(b"/"):
        return _target(raw_path, query, raw=True)
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if isinstance(path, str) and isinstance(root, str) and not path.startswith(root):
        path = root + path  # a server of the older ASGI versions: path excludes the mount point
    return _target(_text_bytes(path, "utf-8", "path"), query, raw=False)


def _asgi_request(scope: Mapping[str, Any], body: bytes = b"") -> _Incoming:
    """Read an ASGI HTTP scope; EventError for one that cannot be read."""
    pairs = scope.get("headers") or ()
    if not isinstance(pairs, (list, tuple)) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(part, bytes) for part in pair)
        for pair in pairs
    ):
        raise EventError("the request's headers are not pairs of bytes")
    headers = _request_headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in pairs)
    server = scope.get("server")
    listening = "localhost"
    if isinstance(server, (list, tuple)) and len(server) == 2:
        address = str(server[0])
        listening = f"[{address}]:{server[1]}" if ":" in address else f"{address}:{server[1]}"  # IPv6 in brackets
    method = scope.get("method")
    method = method.upper() if isinstance(method, str) else "GET"
    scheme = _request_scheme(scope.get("scheme", "http"))
    return _Incoming(method, scheme, headers.get(_HOST_HEADER) or listening, _asgi_target(scope), headers, body, "asgi")


def url_from_asgi(
    scope: Mapping[str, Any], *, base_url: str | None = None, trusted_proxies: Mapping[str, int] | None = None
) -> str:
    """Return the URL QStash called, from an ASGI HTTP scope (Starlette's and FastAPI's ``request.scope``).

    The path is the scope's ``raw_path`` (else ``path`` encoded again), then
    ``query_string``; ``base_url`` and ``trusted_proxies`` as for ``url_from_wsgi``.
    Raises EventError for a scope it cannot read, ConfigurationError for a bad ``base_url``.
    """
    return _public_url(_asgi_request(scope), base_url and _base_url(base_url), _proxies(trusted_proxies))


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
        """The body decoded as UTF-8; raises ValueError saying where it is not (without the body)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as err:
            problem = f"the body is not UTF-8: {err.reason} at byte {err.start}"
        raise ValueError(problem)  # outside the except: no context holding the body

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError saying where it is not (without the body)."""
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as err:
            problem = f"the body is not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        except RecursionError:
            problem = "the body is not JSON this parser can read: nested too deep"
        raise ValueError(problem)

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
        raise EventError(f"not a QStash callback: {name!r} must be of type {kind.__name__}")
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
    digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_TIME_DIGITS
    milliseconds = int(value) if digits else value
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
    return _field(event, "rawPath", str, "/"), _field(event, "rawQueryString", str, "")


def _v1_target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    # requestContext.path carries the stage; parameters arrive decoded and are encoded again.
    path = _field(context, "path", str) or _field(event, "path", str, "/")
    pairs = [(_text_bytes(k, "utf-8", "query"), _text_bytes(v, "utf-8", "query")) for k, v in _query_parameters(event)]
    return path, "&".join(f"{_percent_encode(k, _QUERY_UNSAFE)}={_percent_encode(v, _QUERY_UNSAFE)}" for k, v in pairs)


def _alb_target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    # An ALB passes the path and the query values undecoded: kept verbatim.
    return _field(event, "path", str, "/"), "&".join(f"{k}={v}" for k, v in _query_parameters(event))


class _Door(NamedTuple):
    """A front door: how to know its events, where they keep the request target (and whether its path
    arrives raw or decoded), and what its answer must look like.  Adding one is adding it to _DOORS."""

    name: str
    knows: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]  # (event, requestContext) -> is it ours
    target: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, str]]
    raw_path: bool  # HTTP APIs hand the path over decoded; Function URLs, REST APIs and ALBs as sent
    status_description: bool = False
    multi_value_headers: bool = False


def _is_v2(event: Mapping[str, Any]) -> bool:
    return event.get("version") == "2.0" and "rawPath" in event


def _is_function_url(event: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    domain = context.get("domainName")
    return _is_v2(event) and isinstance(domain, str) and ".lambda-url." in domain and domain.endswith(".on.aws")


# Tried in this order: the commonest first, and each door before the one it is a particular case of.
_DOORS = (
    _Door("function_url", _is_function_url, _v2_target, True),
    _Door("http_api_v2", lambda e, c: _is_v2(e), _v2_target, False),
    _Door("alb_multi_value", lambda e, c: "elb" in c and "multiValueHeaders" in e, _alb_target, True, True, True),
    _Door("alb", lambda e, c: "elb" in c, _alb_target, True, status_description=True),
    _Door("http_api_v1", lambda e, c: "httpMethod" in e and e.get("version") == "1.0", _v1_target, False),
    _Door("rest_api", lambda e, c: "httpMethod" in e, _v1_target, True),
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


def _http_method(event: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    method = _field(event, "httpMethod", str) or _field(_field(context, "http", dict, {}), "method", str, "")
    return method.upper()  # type: ignore[no-any-return]


def _lambda_request(event: dict[str, Any], door: _Door) -> _Incoming:
    context = event["requestContext"]
    path, query = door.target(event, context)
    if door.raw_path and path[:1] == "/" and _as_is(path) and _as_is(query):
        target = f"{path}?{query}" if query else path  # what _target gives such a target, without its copies
    else:
        target = _target(_text_bytes(path, "utf-8", "path"), _text_bytes(query, "utf-8", "query"), raw=door.raw_path)
    headers = types.MappingProxyType(_event_headers(event))
    # The front door's own X-Forwarded-Proto is the last entry: a client's would come before it.
    proto = headers.get(_FORWARDED_PROTO_HEADER, "").rpartition(",")[2].strip().lower()
    scheme = proto if proto in _DEFAULT_PORTS else "https"
    host = headers.get(_HOST_HEADER) or _field(context, "domainName", str, "")
    return _Incoming(_http_method(event, context), scheme, host, target, headers, _event_body(event), door.name)


def parse_lambda_event(event: object) -> HttpRequest:
    """Rebuild the HTTP request from a Function URL, API Gateway (HTTP or REST API) or ALB event.

    Raises EventError for anything that is not such an event, or whose Host is no host[:port].
    """
    request = _lambda_request(event, _http_door(event))  # type: ignore[arg-type]
    return HttpRequest(request.method, _public_url(request, None, {}), request.headers, request.body, request.door)


# --- settings: the environment (and an app's options), read once per process -------------


class _Settings(NamedTuple):
    """What the environment and an app's options configure, built once and kept while unchanged."""

    receivers: Mapping[str | None, Receiver]
    url: str
    base_url: str
    clock_tolerance: float
    deduplicator: Deduplicator | None
    proxies: Mapping[str, int]
    metrics: str  # QSTASH_METRICS_NAMESPACE: '' when the log line is no metrics document


class _Options(NamedTuple):
    """What an app was given in code; None (or empty) is taken from the environment."""

    receiver: Receiver | None = None
    deduplicator: Deduplicator | None = None
    base_url: str | None = None
    proxies: Mapping[str, int] = types.MappingProxyType({})


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
    if table and not ttl:
        raise _configuration_error(f"{_DEDUP_TTL_VARIABLE} must be seconds > 0", _DEDUP_TTL_VARIABLE)
    return Deduplicator(DynamoDBStore(table), ttl=ttl) if table else None


def _receivers(env: Mapping[str, str]) -> dict[str | None, Receiver]:
    keys = _signing_keys(env)
    receivers = {pair: Receiver(*pair) for pair in set(keys.values())}
    return {region: receivers[pair] for region, pair in keys.items()}


def _build_settings(env: Mapping[str, str], options: _Options) -> _Settings:
    base_url = options.base_url or _optional(env, _BASE_URL_VARIABLE)
    return _Settings(
        {None: options.receiver} if options.receiver else _receivers(env),
        _optional(env, _URL_VARIABLE),
        base_url and _base_url(base_url, None if options.base_url else _BASE_URL_VARIABLE),
        _seconds(env, _CLOCK_TOLERANCE_VARIABLE, 0),
        options.deduplicator or _deduplicator(env),
        options.proxies,
        _optional(env, _METRICS_VARIABLE),
    )


class _Cached(NamedTuple):
    settings: _Settings
    size: int  # len(env) when built: a variable added since changes it
    values: tuple[tuple[str, str], ...]  # the variables that were set, and their values (keys among them)

    def __repr__(self) -> str:
        return f"_Cached(<{len(self.values)} variables>)"  # never the values: signing keys are among them


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


class _Config:
    """One door's settings: its options, and what the environment last gave with them (key rotation
    takes effect without a restart); one entry, so nothing retained grows with traffic."""

    __slots__ = ("cached", "options")

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.cached: _Cached | None = None

    def settings(self, env: Mapping[str, str]) -> _Settings:
        cached: _Cached | None = self.cached
        if cached is not None and _still_valid(cached, env):
            return cached.settings
        settings = _build_settings(env, self.options)
        values = tuple((name, env[name]) for name in _SETTINGS_VARIABLES if env.get(name) is not None)
        self.cached = _Cached(settings, len(env), values)
        return settings


_LAMBDA = _Config(_Options())


def _verify_request(request: _Incoming, settings: _Settings, now: float | None) -> Message:
    receivers = settings.receivers
    receiver = receivers.get(_region_of(request.headers.get(_REGION_HEADER))) or receivers[None]
    url = settings.url or _public_url(request, settings.base_url, settings.proxies)
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
    request = _lambda_request(event, _http_door(event))  # type: ignore[arg-type]
    return _verify_request(request, _LAMBDA.settings(os.environ if environ is None else environ), now)


# --- the pipeline: request -> verified message -> claim -> handle -> answer -> log record ----


class _Answer(NamedTuple):
    status: int
    body: str | bytes  # bytes: binary, base64 in a Lambda answer
    headers: Mapping[str, str]


_JSON_HEADERS = {_CONTENT_TYPE_HEADER: "application/json"}
_TEXT_HEADERS = {_CONTENT_TYPE_HEADER: "text/plain; charset=utf-8"}
_BINARY_HEADERS = {_CONTENT_TYPE_HEADER: "application/octet-stream"}
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Framing and hop-by-hop headers: the server writes them from the answer, never the handler.
_DOOR_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade")
)
_BODILESS_STATUSES = (204, 304)


def _json_text(value: Any) -> str:
    """``json.dumps(value)``, twice as fast; raises TypeError for what JSON cannot hold."""
    return "".join(_JSON_ENCODE(value, 0))


def _json_answer(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] = _JSON_HEADERS) -> _Answer:
    return _Answer(status, _json_text(payload), headers)


def _render(reply: Any) -> _Answer:
    """A handler's return value as an answer: None, str, bytes, JSON, or (status, any of those[, headers]).

    Raises TypeError or ValueError, naming the problem, for a malformed one."""
    if not isinstance(reply, tuple):
        return _body_answer(reply)
    if len(reply) not in (2, 3):
        raise TypeError("an answer tuple is (status, body) or (status, body, headers)")
    status = reply[0]
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError(f"an answer's status is an int from 200 to 599, not {_kind(status)}")
    answer = _body_answer(reply[1])
    if status in _BODILESS_STATUSES and answer.body:
        raise ValueError(f"a {status} answer has no body")
    if len(reply) == 2:
        return _Answer(status, answer.body, answer.headers)
    given = _checked_headers(reply[2])
    names = {name.lower() for name in given}  # a handler's Content-Type replaces the default, in any case
    return _Answer(status, answer.body, {**{k: v for k, v in answer.headers.items() if k not in names}, **given})


def _kind(value: object) -> str:
    return str(value) if type(value) is int else type(value).__name__  # never a value that may hold data


def _body_answer(body: Any) -> _Answer:
    if body is None:
        return _Answer(200, "", {})
    if isinstance(body, str):
        if _encoded(body, "utf-8") is None:
            raise ValueError("an answer's text is not valid Unicode (it holds a lone surrogate)")
        return _Answer(200, body, _TEXT_HEADERS)
    if isinstance(body, (bytes, bytearray)):
        return _Answer(200, bytes(body), _BINARY_HEADERS)
    if isinstance(body, tuple):
        raise TypeError("an answer's body is not a tuple (return a list for a JSON array)")
    return _json_answer(200, body)


def _checked_headers(headers: object) -> dict[str, str]:
    """A handler's response headers; TypeError unless they map tokens to printable ASCII, ValueError for
    a name given twice (in any case) or a header the door itself writes."""
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _HEADER_NAME.fullmatch(k) and _HEADER_VALUE.fullmatch(v)
        for k, v in headers.items()
    ):
        raise TypeError("an answer's headers map names (tokens) to printable ASCII text")
    names = {name.lower() for name in headers}
    if len(names) < len(headers) or not _DOOR_HEADERS.isdisjoint(names):
        raise ValueError(f"an answer's headers name one twice, or one of {', '.join(sorted(_DOOR_HEADERS))}")
    return headers


def _retry_answer(seconds: int, error: str) -> _Answer:
    return _json_answer(_RETRY_STATUS, {"error": error}, {**_JSON_HEADERS, _RETRY_AFTER_HEADER: str(seconds)})


class _Outcome(NamedTuple):
    """What the pipeline decided: the answer, and why."""

    answer: _Answer
    outcome: str
    reason: str | None = None
    detail: str | None = None
    variable: str | None = None
    traceback: str | None = None


class _LogRecord(NamedTuple):
    """The one log record of a request: these fields, in this order (README.md lists them)."""

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


_INTERNAL_ERROR = {"error": "internal_error"}


def _bad_request(err: EventError, error: str = "bad_request", status: int = 400) -> _Outcome:
    return _Outcome(_json_answer(status, {"error": error, "message": str(err)}), "bad_request", detail=str(err))


def _refusal(err: Exception) -> _Outcome:
    """The answer to a request refused before the handler: 400, 401, 500 or 503."""
    if isinstance(err, SignatureError):
        return _Outcome(_json_answer(401, {"error": err.reason.value}), "rejected", err.reason.value, str(err))
    if isinstance(err, ConfigurationError):
        answer = _json_answer(500, {"error": "server_misconfigured"})
        return _Outcome(answer, "misconfigured", detail=str(err), variable=err.variable)
    if isinstance(err, RetryLater):  # the store failed, or another process is handling this message
        error = "dedup_unavailable" if isinstance(err, DedupUnavailable) else "in_progress"
        return _Outcome(_retry_answer(err.seconds, error), error, detail=str(err))
    return _bad_request(err)  # type: ignore[arg-type]


# What _admit turns into an answer: anything else is a fault of this module, and surfaces as one.
_REFUSED = (EventError, ConfigurationError, SignatureError, RetryLater)


def _admit(
    request: _Incoming, config: _Config, env: Mapping[str, str], now: float | None, lease: float | None
) -> _Admitted | _Outcome:
    """Verify and claim a request: what the handler needs, or the answer that refuses it."""
    try:
        settings = config.settings(env)
        message = _verify_request(request, settings, now)
        guard = settings.deduplicator
        if guard is None:
            return message, None, None
        tolerance, lease = settings.clock_tolerance, lease if lease is None else max(lease, _MIN_LEASE_SECONDS)
        claim = guard.begin(message.claims, message.message_id, lease=lease, clock_tolerance=tolerance, now=now)
    except _REFUSED as err:
        return _refusal(err)
    return (message, guard, claim) if claim else _Outcome(_json_answer(200, {"duplicate": True}), "duplicate")


def _settle(admitted: _Admitted, outcome: _Outcome, now: float | None) -> _Outcome:
    """Mark the message handled after a 2xx answer, else release it for QStash's retry."""
    _, guard, claim = admitted
    if guard is None or claim is None:
        return outcome
    try:
        settled = guard.succeeded(claim, now=now) if 200 <= outcome.answer.status < 300 else guard.failed(claim)
        why = "the claim had lapsed and is another delivery's now"
    except DedupUnavailable as err:  # the work is done or failed either way; the claim lapses with its lease
        settled, why = False, str(err)
    return outcome if settled else outcome._replace(detail=f"{outcome.detail or ''} not recorded: {why}".strip())


def _failure(err: Exception) -> _Outcome:
    """The answer to a handler that raised (call it in the except clause: it reads the traceback)."""
    if isinstance(err, NonRetryableError):
        headers = {**_JSON_HEADERS, _NON_RETRYABLE_HEADER: "true"}
        payload = {"error": "non_retryable", "message": str(err)}
        return _Outcome(_json_answer(_NON_RETRYABLE_STATUS, payload, headers), "non_retryable", detail=str(err))
    if isinstance(err, RetryLater):
        return _Outcome(_retry_answer(err.seconds, "retry_later"), "retry_later", detail=str(err))
    import traceback  # noqa: PLC0415 -- only on failure: keeps cold starts fast

    return _Outcome(_json_answer(500, _INTERNAL_ERROR), "handler_error", traceback=traceback.format_exc())


def _reply(reply: Any) -> _Outcome:
    try:
        return _Outcome(_render(reply), "ok")
    except (TypeError, ValueError, RecursionError) as err:  # a malformed answer (a cycle included): named in the log
        return _Outcome(_json_answer(500, _INTERNAL_ERROR), "handler_error", detail=f"the handler's answer: {err}")


def _run(handler: Handler, message: Message) -> _Outcome:
    try:
        reply = handler(message)
    except Exception as err:  # noqa: BLE001 -- any failure of user code is an answer, so QStash retries
        return _failure(err)
    return _reply(reply)


def _serve(
    request: _Incoming,
    handler: Handler,
    config: _Config,
    env: Mapping[str, str],
    *,
    now: float | None,
    lease: float | None,
) -> _Outcome:
    """The whole pipeline for a request a door has read."""
    admitted = _admit(request, config, env, now, lease)
    if isinstance(admitted, _Outcome):
        return admitted
    return _settle(admitted, _run(handler, admitted[0]), now)


def _log_record(
    outcome: _Outcome, request: _Incoming | None, door: str | None, request_id: str | None, started: float
) -> _LogRecord:
    """The outcome and what the log adds: who sent it (unsigned headers), where, and how long it took."""
    headers = request.headers if request is not None else {}
    return _LogRecord._make(
        (
            outcome.answer.status,
            *outcome[1:],
            headers.get(_MESSAGE_ID_HEADER, "")[:_MAX_LOGGED_ID] or None,
            _retry_count(headers) if request is not None else None,
            door,
            request_id,
            round((time.perf_counter() - started) * 1000, 3),
        )
    )


# --- the Lambda door ------------------------------------------------------------------


def _http_door(event: object) -> _Door:
    door = _door_of(event)
    if door is None:
        raise EventError("not an HTTP event from a Function URL, API Gateway or an ALB")
    return door


def _reason_phrase(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415 -- only ALBs and WSGI want a phrase

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Non-Retryable Error" if status == _NON_RETRYABLE_STATUS else "Unknown"


def _response(door: _Door | None, answer: _Answer) -> dict[str, Any]:
    """Shape the answer as the front door requires; any other shape becomes a 502 there."""
    body, binary = answer.body, not isinstance(answer.body, str)
    text = binascii.b2a_base64(body, newline=False).decode("ascii") if binary else body  # type: ignore[arg-type]
    response: dict[str, Any] = {"statusCode": answer.status, "body": text, "isBase64Encoded": binary}
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


def _lease(context: object) -> float | None:
    """Seconds this invocation may still run (a claim lasts no longer), or None outside Lambda."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else None


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
    request = None
    try:
        request = _lambda_request(event, door or _http_door(event))  # type: ignore[arg-type]
    except EventError as err:
        outcome = _bad_request(err, "bad_request" if door else "not_http_event")
    else:
        outcome = _serve(request, handler, _LAMBDA, env, now=now, lease=_lease(context))
    record = _log_record(outcome, request, door and door.name, _request_id(context), started)._asdict()
    cached = _LAMBDA.cached  # current unless the settings could not be built: then the variable itself
    namespace = cached.settings.metrics if cached and outcome.outcome != "misconfigured" else env.get(_METRICS_VARIABLE)
    if namespace:  # the log line is a CloudWatch metrics document too
        function = env.get("AWS_LAMBDA_FUNCTION_NAME") or ""
        record.update(_metrics(record, namespace, function, int(time.time() * 1000)))
    print(_json_text(record), flush=True)
    return _response(door, outcome.answer)


# --- the WSGI and ASGI doors ----------------------------------------------------------

#: The largest body ``wsgi_app`` and ``asgi_app`` read by default (QStash's own limit is lower).
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_LOGGER = "qstash_verify"


class _AppOptions(NamedTuple):
    """An app's options, as ``wsgi_app`` and ``asgi_app`` take them."""

    receiver: Receiver | None
    deduplicator: Deduplicator | None
    base_url: str | None
    trusted_proxies: Mapping[str, int] | None
    max_body_bytes: int
    environ: Mapping[str, str] | None
    now: float | None


class _AppDoor(NamedTuple):
    """What a WSGI or ASGI app was configured with."""

    handle: Handler
    config: _Config
    max_body: int
    environ: Mapping[str, str] | None
    now: float | None
    log: Callable[[int, str], None]


def _app_door(handle: Handler, options: _AppOptions) -> _AppDoor:
    """Check an app's options; raise for a bad one when the app is made, not on a request."""
    if not callable(handle):
        raise TypeError("handle must be callable")
    limit = options.max_body_bytes
    if type(limit) is not int or limit < 0:
        raise ValueError("max_body_bytes must be a whole number >= 0")
    proxies = types.MappingProxyType(dict(_proxies(options.trusted_proxies)))
    base_url = options.base_url and _base_url(options.base_url)
    config = _Config(_Options(options.receiver, options.deduplicator, base_url, proxies))
    import logging  # noqa: PLC0415 -- only the WSGI and ASGI doors log through it

    return _AppDoor(handle, config, limit, options.environ, options.now, logging.getLogger(_LOGGER).log)


def _log_level(outcome: _Outcome) -> int:
    if 200 <= outcome.answer.status < 300:
        return 20  # logging.INFO
    return 40 if outcome.outcome in ("handler_error", "misconfigured") else 30  # ERROR, else WARNING


def _app_record(door: _AppDoor, outcome: _Outcome, request: _Incoming | None, name: str, started: float) -> None:
    door.log(_log_level(outcome), _json_text(_log_record(outcome, request, name, None, started)._asdict()))


def _answer_bytes(answer: _Answer, method: str) -> bytes:
    body = answer.body if isinstance(answer.body, bytes) else answer.body.encode("utf-8")
    return b"" if method == "HEAD" else body


class _BodyTooLargeError(EventError):
    """The body is over the app's limit."""


def _too_large(limit: int) -> _BodyTooLargeError:
    return _BodyTooLargeError(f"the body is over {limit} bytes (max_body_bytes)")


def _content_length(value: object, limit: int) -> int | None:
    """A request's Content-Length, None when absent; EventError when malformed, _BodyTooLargeError over the limit."""
    if isinstance(value, str):
        value = value.strip(" \t")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise EventError("Content-Length is not a whole number")
    if int(value) > limit:
        raise _too_large(limit)
    return int(value)


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _wsgi_body(environ: Mapping[str, Any], limit: int) -> bytes:
    """The request body; a server that passes chunked bodies undecoded (wsgiref) cannot give it."""
    length = _content_length(environ.get("CONTENT_LENGTH"), limit)
    stream = environ.get("wsgi.input")
    if length is not None:
        return _read_exactly(stream, length)
    if environ.get("wsgi.input_terminated"):
        body = _read_exactly(stream, limit + 1)
        if len(body) > limit:
            raise _too_large(limit)
        return body
    if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        raise EventError("this server passes chunked bodies undecoded: send Content-Length")
    return b""


def _wsgi_outcome(door: _AppDoor, environ: Mapping[str, Any]) -> tuple[_Outcome, _Incoming | None]:
    try:
        request = _wsgi_request(environ, _wsgi_body(environ, door.max_body))
    except _BodyTooLargeError as err:
        return _bad_request(err, "body_too_large", 413), None
    except EventError as err:
        return _bad_request(err), None
    env = os.environ if door.environ is None else door.environ
    return _serve(request, door.handle, door.config, env, now=door.now, lease=None), request


class _WSGIApp:
    """A WSGI application for one QStash endpoint (see ``wsgi_app``)."""

    __slots__ = ("_door",)

    def __init__(self, door: _AppDoor) -> None:
        self._door = door

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = time.perf_counter()
        outcome, request = _wsgi_outcome(self._door, environ)
        _app_record(self._door, outcome, request, "wsgi", started)
        answer = outcome.answer
        body = _answer_bytes(answer, request.method if request else "")
        headers = [*answer.headers.items(), ("Content-Length", str(len(body)))]
        start_response(f"{answer.status} {_reason_phrase(answer.status)}", headers)
        return [body]


def wsgi_app(
    handle: Handler,
    *,
    receiver: Receiver | None = None,
    deduplicator: Deduplicator | None = None,
    base_url: str | None = None,
    trusted_proxies: Mapping[str, int] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """Return a WSGI application that runs ``handle(message)`` once per verified QStash delivery.

    The same pipeline and answers as ``serve_lambda``.  Unset, ``receiver`` (the keys),
    ``deduplicator`` and ``base_url`` come from the ``QSTASH_*`` variables;
    ``trusted_proxies`` as for ``url_from_wsgi``; over ``max_body_bytes`` the answer is
    413; ``environ`` and ``now`` are for tests.  One JSON record per request goes to
    the logger ``qstash_verify``.  Raises TypeError or ValueError for a bad option,
    ConfigurationError for a bad ``base_url``.
    """
    options = _AppOptions(receiver, deduplicator, base_url, trusted_proxies, max_body_bytes, environ, now)
    return _WSGIApp(_app_door(handle, options))


async def _asgi_body(request: _Incoming, receive: Callable[[], Any], limit: int) -> bytes | None:
    """The request body, None when the client went away; _BodyTooLargeError over the limit."""
    _content_length(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _run_async(handler: Handler, message: Message) -> _Outcome:
    """Run ``handler``: a coroutine function on the event loop, anything else in a thread."""
    import asyncio  # noqa: PLC0415 -- the ASGI door only
    import inspect  # noqa: PLC0415

    try:
        if inspect.iscoroutinefunction(handler):
            reply = await handler(message)
        else:
            reply = await asyncio.get_running_loop().run_in_executor(None, handler, message)
        if inspect.isawaitable(reply):
            reply = await reply
    except Exception as err:  # noqa: BLE001 -- any failure of user code is an answer
        return _failure(err)
    return _reply(reply)


async def _serve_async(door: _AppDoor, request: _Incoming) -> _Outcome:
    """The pipeline off the event loop (the store and verification block), the handler as it prefers."""
    import asyncio  # noqa: PLC0415

    loop, env = asyncio.get_running_loop(), os.environ if door.environ is None else door.environ
    admitted = await loop.run_in_executor(None, _admit, request, door.config, env, door.now, None)
    if isinstance(admitted, _Outcome):
        return admitted
    outcome = await _run_async(door.handle, admitted[0])
    return await loop.run_in_executor(None, _settle, admitted, outcome, door.now)


async def _lifespan(receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    while True:  # nothing to start or stop: each phase is acknowledged
        message = await receive()
        phase = message.get("type", "").rpartition(".")[2]
        await send({"type": f"lifespan.{phase}.complete"})
        if phase == "shutdown":
            return


async def _asgi_outcome(
    door: _AppDoor, scope: Mapping[str, Any], receive: Callable[[], Any]
) -> tuple[_Outcome | None, _Incoming | None]:
    try:
        request = _asgi_request(scope)  # its headers checked before anything is read by them
        body = await _asgi_body(request, receive, door.max_body)
        if body is None:
            return None, None
        request = request._replace(body=body)
    except _BodyTooLargeError as err:
        return _bad_request(err, "body_too_large", 413), None
    except EventError as err:
        return _bad_request(err), None
    return await _serve_async(door, request), request


class _ASGIApp:
    """An ASGI application for one QStash endpoint (see ``asgi_app``)."""

    __slots__ = ("_door",)

    def __init__(self, door: _AppDoor) -> None:
        self._door = door

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope.get("type") == "lifespan":
            return await _lifespan(receive, send)
        if scope.get("type") != "http":
            return None  # websockets: closed unanswered
        started = time.perf_counter()
        outcome, request = await _asgi_outcome(self._door, scope, receive)
        if outcome is None:
            return None  # the client went away before its body arrived
        _app_record(self._door, outcome, request, "asgi", started)
        answer = outcome.answer
        body = _answer_bytes(answer, request.method if request else "")
        headers = [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return None


def asgi_app(
    handle: Handler,
    *,
    receiver: Receiver | None = None,
    deduplicator: Deduplicator | None = None,
    base_url: str | None = None,
    trusted_proxies: Mapping[str, int] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
) -> Callable[..., Any]:
    """Return an ASGI application that runs ``handle(message)`` once per verified QStash delivery.

    As ``wsgi_app``; ``handle`` may be a coroutine function (run on the event
    loop), a plain one runs in a thread, as do the verification and the store.
    """
    options = _AppOptions(receiver, deduplicator, base_url, trusted_proxies, max_body_bytes, environ, now)
    return _ASGIApp(_app_door(handle, options))


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
    if sys.stdin.isatty():
        print("reading the body from standard input, up to Ctrl-D (or give --body or --body-file)", file=sys.stderr)
    return sys.stdin.buffer.read()


def _cli_key(value: str | None, option: str) -> str | None:
    """A key option's value, checked as the environment's keys are (the error names the option)."""
    if value:
        _checked_key(value, variable=option)
    return value


def _cli_receiver(args: Any) -> Receiver:
    current, following = _cli_key(args.current_key, "--current-key"), _cli_key(args.next_key, "--next-key")
    if following and not current:
        raise ConfigurationError("--next-key needs --current-key")
    if current:
        return Receiver(current, following or None)
    return Receiver.from_env(region=args.region)


def _cli_sign(args: Any) -> int:
    variable = _CURRENT_KEY_VARIABLE
    key = _cli_key(args.key, "--key") or _checked_key(_required(os.environ, variable), variable=variable)
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
    issued = _issue_time(args.signature) if args.at_issue else None
    body = _read_body(args)
    moment = time.time() if issued is None else issued
    try:
        claims = receiver.verify(
            signature=args.signature, body=body, url=args.url, clock_tolerance=args.clock_tolerance, now=moment
        )
    except SignatureError as err:
        _print_rejection(err, args.signature)
        return 1
    if args.url is None:
        print("note: no --url given, so the URL was NOT checked", file=sys.stderr)
    result = {
        "verified": True,
        "url_checked": args.url is not None,
        "as_of": moment,
        "as_of_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)),
        "as_of_source": "now" if issued is None else "issue",
    }
    print(json.dumps({**result, "claims": claims._asdict()}, indent=2))
    return 0


def _parser() -> Any:
    import argparse  # noqa: PLC0415 -- the CLI only: keeps `import qstash_verify` fast

    shape: dict[str, Any] = {"formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], **shape)
    keys, hook = f"${_CURRENT_KEY_VARIABLE} and ${_NEXT_KEY_VARIABLE}", "--url https://example.com/api/hook"
    run = f"python3 {parser.prog}" if parser.prog.endswith(".py") else parser.prog  # as it runs when copied
    shape["epilog"] = parser.epilog = f"""examples:
  export {_CURRENT_KEY_VARIABLE}=sig_... {_NEXT_KEY_VARIABLE}=sig_...
  TOKEN=$({run} sign {hook} --body '{{"id":1}}')
  {run} verify --signature "$TOKEN" {hook} --body '{{"id":1}}'
  {run} verify --signature "$TOKEN" {hook} --at-issue < body.json

keys: from {keys} (with $QSTASH_REGION, that
  region's) unless given as --key, --current-key or --next-key: options are visible to
  other local users in the process list (ps, /proc); the environment is not.

exit status: 0 signed, or verified (claims on stdout); 1 rejected (the failed check on
  stderr); 2 usage or configuration error."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    signer = commands.add_parser("sign", help="print a token for a URL and body, as QStash would send it", **shape)
    visible = "visible to other local users: prefer the default"
    signer.add_argument("--key", help=f"signing key ({visible}, ${_CURRENT_KEY_VARIABLE})")
    signer.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime, seconds (default: %(default)s)")
    verifier = commands.add_parser("verify", help="verify a token: print its claims, or the check that failed", **shape)
    verifier.add_argument("--signature", required=True, help="the Upstash-Signature header value")
    verifier.add_argument("--current-key", help=f"signing key ({visible}, {keys})")
    verifier.add_argument("--next-key", help=f"next signing key, with --current-key ({visible})")
    verifier.add_argument("--region", help="the Upstash-Region header, with QSTASH_REGION set")
    verifier.add_argument("--clock-tolerance", type=float, default=0, help="seconds of skew allowed (default: 0)")
    verifier.add_argument("--at-issue", action="store_true", help="check a captured token as of its iat, not now")
    for command in (signer, verifier):
        command.add_argument("--url", required=command is signer, help="the URL QStash was asked to call")
        source = command.add_mutually_exclusive_group()
        source.add_argument("--body", help="the raw body as text")
        source.add_argument("--body-file", default="-", help="file holding the raw body (default: -, stdin)")
    return parser


def _main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (also the ``qstash-verify`` command): 0 verified or signed, 1 rejected, 2 usage."""
    args = _parser().parse_args(argv)
    try:
        return _cli_sign(args) if args.command == "sign" else _cli_verify(args)
    except (OSError, ValueError) as err:  # ConfigurationError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())
