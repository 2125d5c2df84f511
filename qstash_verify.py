"""Verify Upstash QStash webhook signatures with the standard library only.

QStash signs every delivery with an ``Upstash-Signature`` header: an HS256 JWT
whose claims bind the request to its destination URL (``sub``) and to the
SHA-256 of its raw body (``body``).  ``Receiver.verify`` checks all of it and
returns the verified ``Claims``, or raises ``SignatureError`` whose ``reason``
says which check failed::

    receiver = Receiver.from_env()          # QSTASH_*_SIGNING_KEY
    claims = receiver.verify(signature=header, body=raw_body, url=public_url)

Also here: ``sign`` mints tokens exactly as QStash does (for tests and local
development), the AWS Lambda adapter (``serve_lambda``) behind
``lambda_function.py``, and a command line: ``python3 qstash_verify.py --help``.

One file, Python 3.9+, no dependencies: vendor it into any project.
"""

from __future__ import annotations

__all__ = [
    "Claims",
    "ConfigurationError",
    "EventError",
    "HttpRequest",
    "Message",
    "NonRetryableError",
    "Reason",
    "Receiver",
    "SignatureError",
    "parse_lambda_event",
    "serve_lambda",
    "sign",
    "verify_lambda_event",
]

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import re
import sys
import time
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import quote

ALGORITHM = "HS256"
ISSUER = "Upstash"
#: Longest ``Upstash-Signature`` accepted; real tokens are ~400 bytes plus the URL.
MAX_TOKEN_BYTES = 16 * 1024
#: exp, nbf and iat beyond this many seconds from the epoch are ill-typed (2**53: exact as a float).
MAX_TIME_SECONDS = 2**53
#: Lifetime of tokens minted by ``sign`` (QStash's own: five minutes).
DEFAULT_TTL_SECONDS = 300
CURRENT_KEY_VARIABLE = "QSTASH_CURRENT_SIGNING_KEY"
NEXT_KEY_VARIABLE = "QSTASH_NEXT_SIGNING_KEY"
REGION_VARIABLE = "QSTASH_REGION"
URL_VARIABLE = "QSTASH_URL"
CLOCK_TOLERANCE_VARIABLE = "QSTASH_CLOCK_TOLERANCE"
SIGNATURE_HEADER = "upstash-signature"
REGION_HEADER = "upstash-region"
NON_RETRYABLE_STATUS = 489
#: Longest Upstash-Message-Id written to the log (the header is not authenticated).
MAX_LOGGED_ID = 128
#: Longest Upstash-Retried read as a count (the header is not authenticated either).
MAX_RETRY_DIGITS = 9

# The header every QStash token carries; recognising its exact bytes skips a JSON parse.
_QSTASH_HEADER = b'{"alg":"HS256","typ":"JWT"}'
_QSTASH_HEADER_SEGMENT = base64.urlsafe_b64encode(_QSTASH_HEADER).rstrip(b"=")
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Unpadded segments of length 4n+2 and 4n+3 end in a character whose 4 or 2 low bits are unused.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_STANDARD_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_JSON_SCAN: Callable[[str, int], Tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
SHA256_BLOCK_BYTES = 64
_XOR_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_XOR_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))
_REGION_NAME = re.compile(r"[A-Z0-9_]{1,40}")
# Characters that never stand literally in an encoded path: escaping only these
# leaves an already-encoded path untouched and makes a decoded one encoded again.
_PATH_SAFE = "/:@!$&'()*+,;=~%"
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUERY_SAFE = "/:@!$'()*,;~"

Body = Union[bytes, bytearray, memoryview, str]


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

    def __str__(self) -> str:
        return self.value


class SignatureError(Exception):
    """A delivery failed verification; ``reason`` is a ``Reason``.

    The message is for humans and never holds a signing key, the token or the body.
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
    """A Lambda event is not an HTTP request from a Function URL, API Gateway or ALB."""


class NonRetryableError(Exception):
    """Raise from your handler to stop QStash retrying: it answers 489 and the
    message goes to the dead-letter queue.  Its text is sent back in the answer."""


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
    issued_at: Optional[float]
    jwt_id: Optional[str]


# --- token parsing -----------------------------------------------------------------


# (signing input, payload, MAC): both still base64url; the payload is decoded once the MAC matched.
_Token = Tuple[bytes, bytes, bytes]


def _b64url_decode(segment: bytes) -> bytes:
    return binascii.a2b_base64(segment.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(segment) % 4))


def _b64url_encode(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).translate(_STANDARD_TO_URLSAFE).rstrip(b"=")


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
    try:
        return signature.encode("ascii")
    except UnicodeEncodeError as err:
        raise SignatureError(Reason.MALFORMED_TOKEN, "the token is not ASCII") from err


def _parse_token(signature: object) -> _Token:
    """Split a compact JWS and check its header; raise SignatureError if malformed."""
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


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        # The C scanner alone is twice as fast as json.loads; whatever it does not
        # consume whole (surrounding whitespace, errors) goes through json.loads.
        try:
            value, end = _JSON_SCAN(text, 0)
        except (StopIteration, ValueError):
            end = -1
        if end != len(text):
            value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise SignatureError(Reason.MALFORMED_TOKEN, f"the token {what} is not UTF-8 JSON") from err
    if not isinstance(value, dict):
        raise SignatureError(Reason.MALFORMED_TOKEN, f"the token {what} is not a JSON object")
    return value


def _check_header(raw: bytes) -> None:
    header = _json_object(raw, "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg != ALGORITHM:
        raise SignatureError(Reason.WRONG_ALGORITHM, f"alg must be {ALGORITHM}, got {alg!r:.20}")
    if "crit" in header:
        raise SignatureError(Reason.MALFORMED_TOKEN, "critical header extensions are not supported")


# --- claims --------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # bool is an int subclass, and NaN fails every comparison: both are rejected here.
    return type(value) in (int, float) and -MAX_TIME_SECONDS <= value <= MAX_TIME_SECONDS  # type: ignore[operator]


def _is_string(value: object) -> bool:
    return type(value) is str


# (claim, check, required): the rules _parse_claims applies all at once.
_CLAIM_RULES = (
    ("iss", _is_string, True),
    ("sub", _is_string, True),
    ("body", _is_string, True),
    ("exp", _is_number, True),
    ("nbf", _is_number, True),
    ("iat", _is_number, False),
    ("jti", _is_string, False),
)


def _claim_error(raw: Mapping[str, Any]) -> SignatureError:
    """Name the first missing or ill-typed claim (the slow path of _parse_claims)."""
    for name, valid, required in _CLAIM_RULES:
        if (required or name in raw) and not valid(raw.get(name)):
            kind = "a string" if valid is _is_string else "a finite number of seconds"
            return SignatureError(Reason.INVALID_CLAIMS, f"claim {name!r} must be {kind}")
    return SignatureError(Reason.INVALID_CLAIMS, "the claims are ill-typed")


def _parse_claims(payload: bytes) -> Claims:
    """Build Claims from a verified payload; raise SignatureError on a missing or ill-typed claim."""
    raw = _json_object(payload, "payload")
    get: Callable[[str], Any] = raw.get  # unchecked values: the checks below type them
    claims = Claims(get("iss"), get("sub"), get("body"), get("exp"), get("nbf"), get("iat"), get("jti"))
    typed = type(claims.issuer) is type(claims.subject) is type(claims.body_hash) is str
    optional = ("jti" not in raw or type(claims.jwt_id) is str) and ("iat" not in raw or _is_number(claims.issued_at))
    if not (typed and optional and _is_number(claims.expires_at) and _is_number(claims.not_before)):
        raise _claim_error(raw)
    if claims.issuer != ISSUER:
        raise SignatureError(Reason.WRONG_ISSUER, f"iss must be {ISSUER!r}, got {claims.issuer!r:.40}")
    return claims


def _check_time(claims: Claims, now: float, tolerance: float) -> None:
    if now >= claims.expires_at + tolerance:
        raise SignatureError(Reason.EXPIRED, f"the token expired at {claims.expires_at:.0f} (now {now:.0f})")
    if now < claims.not_before - tolerance:
        raise SignatureError(Reason.NOT_YET_VALID, f"the token is valid from {claims.not_before:.0f} (now {now:.0f})")


def _without_trailing_slash(url: str) -> str:
    return url[:-1] if url.endswith("/") else url


def _check_url(subject: str, url: str) -> None:
    # URLs are public, so a plain comparison leaks nothing.
    if subject != url and _without_trailing_slash(subject) != _without_trailing_slash(url):
        raise SignatureError(
            Reason.URL_MISMATCH, f"the token was signed for {subject!r} but the request is for {url!r}"
        )


def _body_digest(body: Body) -> bytes:
    """Return the unpadded base64url SHA-256 of the body, the way QStash writes it."""
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeEncodeError as err:
            raise SignatureError(Reason.BODY_MISMATCH, "the body is not encodable as UTF-8") from err
    return _b64url_encode(hashlib.sha256(body).digest())


def _check_body(body_hash: str, body: Body) -> None:
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
    return key.encode("utf-8", "surrogateescape")


# --- the receiver --------------------------------------------------------------------


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    Copying two SHA-256 states costs half of copying an OpenSSL 3 HMAC object;
    tests check every output against ``hmac.new``.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > SHA256_BLOCK_BYTES:
            key = hashlib.sha256(key).digest()
        key = key.ljust(SHA256_BLOCK_BYTES, b"\0")
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

        When QSTASH_REGION is set, ``region`` (the request's Upstash-Region header,
        e.g. ``eu-central-1``) selects EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY and
        its next key; without region keys the plain ones are used.
        Raises ConfigurationError naming the missing or invalid variable.
        """
        env = os.environ if environ is None else environ
        prefix = _key_prefix(env, region)
        current = _required(env, prefix + CURRENT_KEY_VARIABLE)
        return cls(current, _required(env, prefix + NEXT_KEY_VARIABLE))

    def verify(
        self,
        *,
        signature: str | None,
        body: Body,
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


def _required(env: Mapping[str, str], variable: str) -> str:
    value = env.get(variable, "")
    if not value:
        raise ConfigurationError(f"{variable} is not set", variable=variable)
    return value


def _normalise_region(region: str) -> str | None:
    name = region.strip().upper().replace("-", "_")
    return name if _REGION_NAME.fullmatch(name) else None


def _key_prefix(env: Mapping[str, str], region: str | None) -> str:
    """Return the variable prefix of the signing keys to use ('' outside multi-region mode)."""
    primary = env.get(REGION_VARIABLE, "")
    if not primary:
        return ""
    if _normalise_region(primary) is None:
        raise ConfigurationError(f"{REGION_VARIABLE} must name a region like US_EAST_1", variable=REGION_VARIABLE)
    # The header is unauthenticated: it only picks keys, which must still verify the token.
    name = _normalise_region(region or "") or _normalise_region(primary)
    # A region without keys of its own uses the plain ones, as Upstash's SDKs do;
    # with neither, the error names the region's variable.
    if env.get(f"{name}_{CURRENT_KEY_VARIABLE}") or not env.get(CURRENT_KEY_VARIABLE):
        return f"{name}_"
    return ""


# --- minting -------------------------------------------------------------------------


def sign(
    signing_key: str,
    *,
    url: str,
    body: Body,
    now: float | None = None,
    ttl: int = DEFAULT_TTL_SECONDS,
    not_before: int = 0,
    jwt_id: str | None = None,
) -> str:
    """Return an Upstash-Signature token for ``url`` and ``body``, laid out as QStash signs them.

    For tests and local development.  Raises ConfigurationError for an empty key.
    """
    issued = int(_current_time(now))
    claims = {
        "iss": ISSUER,
        "sub": url,
        "exp": issued + ttl,
        "nbf": not_before,
        "iat": issued,
        "jti": jwt_id or "jwt_" + _b64url_encode(os.urandom(18)).decode("ascii"),
        "body": (_body_digest(body) + b"=").decode("ascii"),
    }
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _QSTASH_HEADER_SEGMENT + b"." + payload
    mac = hmac.new(_key_bytes(signing_key), signing_input, hashlib.sha256)
    return (signing_input + b"." + _b64url_encode(mac.digest())).decode("ascii")


# --- AWS Lambda ----------------------------------------------------------------------


class HttpRequest(NamedTuple):
    """An HTTP request rebuilt from a Lambda event (not yet verified).

    ``headers`` has lower-cased names; ``body`` is the raw bytes the client sent;
    ``url`` is the public URL as well as the event can tell it.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class Message(NamedTuple):
    """A verified QStash delivery, as handed to your handler."""

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
        """The Upstash-Message-Id header."""
        return self.headers.get("upstash-message-id")

    @property
    def retried(self) -> int:
        """How many times QStash has retried this message (Upstash-Retried), 0 at first."""
        return _retry_count(self.headers)


def _retry_count(headers: Mapping[str, str]) -> int:
    value = headers.get("upstash-retried", "0").strip()
    # The header is not authenticated: anything but a plain, short count reads as 0.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= MAX_RETRY_DIGITS else 0


def _field(mapping: Mapping[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = mapping.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise EventError(f"event field {name!r} is not a {kind.__name__}")
    return value


def _event_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """Merge headers or multiValueHeaders into one dict with lower-cased names."""
    multi = _field(event, "multiValueHeaders", dict, {})
    pairs = [(name, values) for name, values in multi.items()] or list(_field(event, "headers", dict, {}).items())
    headers: dict[str, str] = {}
    for name, value in pairs:
        values = value if isinstance(value, list) else [value]
        if not isinstance(name, str) or not all(isinstance(item, str) for item in values):
            raise EventError("event headers must map strings to strings")
        key = name.lower()
        headers[key] = ",".join([headers[key], *values] if key in headers else values)
    return headers


def _event_body(event: Mapping[str, Any]) -> bytes:
    body = _field(event, "body", str, "")
    if event.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as err:
            raise EventError("isBase64Encoded is true but the body is not base64") from err
    try:
        return body.encode("utf-8")  # type: ignore[no-any-return]
    except UnicodeEncodeError as err:
        raise EventError("the event body is not valid text") from err


def _encode_path(path: str) -> str:
    return quote(_BARE_PERCENT.sub("%25", path), safe=_PATH_SAFE)


def _query_parameters(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    multi = _field(event, "multiValueQueryStringParameters", dict, {})
    pairs = [(k, v) for k, values in multi.items() for v in (values if isinstance(values, list) else [values])]
    pairs = pairs or list(_field(event, "queryStringParameters", dict, {}).items())
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise EventError("event query parameters must map strings to strings")
    return pairs


def _target(event: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
    """Return (path, query) as the client sent them, for each front door's event shape."""
    if event.get("version") == "2.0" and "rawPath" in event:
        return _encode_path(_field(event, "rawPath", str, "/")), _field(event, "rawQueryString", str, "")
    if "elb" in context:  # ALB passes path and query values undecoded: keep them verbatim.
        pairs = _query_parameters(event)
        return _field(event, "path", str, "/"), "&".join(f"{k}={v}" for k, v in pairs)
    if "httpMethod" in event:  # v1: requestContext.path carries the stage; parameters are decoded.
        path = _field(context, "path", str) or _field(event, "path", str, "/")
        pairs = _query_parameters(event)
        return _encode_path(path), "&".join(f"{quote(k, _QUERY_SAFE)}={quote(v, _QUERY_SAFE)}" for k, v in pairs)
    raise EventError("not an HTTP event from a Function URL, API Gateway or an ALB")


def _public_url(headers: Mapping[str, str], context: Mapping[str, Any], path: str, query: str) -> str:
    scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip().lower()
    host = headers.get("host") or _field(context, "domainName", str, "")
    if not host:
        raise EventError("the event has neither a Host header nor requestContext.domainName")
    scheme = scheme if scheme in ("http", "https") else "https"
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def _http_method(event: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    http = _field(context, "http", dict, {})
    method = _field(event, "httpMethod", str) or _field(http, "method", str, "")
    return method.upper()  # type: ignore[no-any-return]


def parse_lambda_event(event: object) -> HttpRequest:
    """Rebuild the HTTP request from a Function URL, API Gateway (HTTP or REST API) or ALB event.

    Raises EventError for anything that is not such an event.
    """
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        raise EventError("not an HTTP event from a Function URL, API Gateway or an ALB")
    context = event["requestContext"]
    try:
        path, query = _target(event, context)
    except UnicodeEncodeError as err:  # lone surrogates from JSON escapes cannot be percent-encoded
        raise EventError("the event's path or query is not valid text") from err
    headers = _event_headers(event)
    url = _public_url(headers, context, path, query)
    return HttpRequest(_http_method(event, context), url, MappingProxyType(headers), _event_body(event))


def _clock_tolerance(env: Mapping[str, str]) -> float:
    raw = env.get(CLOCK_TOLERANCE_VARIABLE, "") or "0"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not _is_number(value) or value < 0:
        raise ConfigurationError(f"{CLOCK_TOLERANCE_VARIABLE} must be seconds >= 0", variable=CLOCK_TOLERANCE_VARIABLE)
    return value


def _verify_request(request: HttpRequest, env: Mapping[str, str], now: float | None) -> Message:
    receiver = Receiver.from_env(region=request.headers.get(REGION_HEADER), environ=env)
    url = env.get(URL_VARIABLE) or request.url
    claims = receiver.verify(
        signature=request.headers.get(SIGNATURE_HEADER),
        body=request.body,
        url=url,
        clock_tolerance=_clock_tolerance(env),
        now=now,
    )
    return Message(request.body, request.headers, url, claims)


def verify_lambda_event(
    event: object, *, environ: Mapping[str, str] | None = None, now: float | None = None
) -> Message:
    """Verify a Lambda HTTP event and return the Message.

    Keys come from the environment (see ``Receiver.from_env``); the URL checked is
    QSTASH_URL when set, else the one rebuilt from the event.  Raises EventError,
    ConfigurationError or SignatureError.
    """
    env = os.environ if environ is None else environ
    return _verify_request(parse_lambda_event(event), env, now)


class _Answer(NamedTuple):
    status: int
    body: str
    headers: Mapping[str, str]
    is_base64: bool = False


_JSON = {"content-type": "application/json"}
Handler = Callable[[Message], Any]


def _json_answer(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] = _JSON) -> _Answer:
    return _Answer(status, json.dumps(payload), headers)


def _render(reply: Any) -> _Answer:
    """Turn a handler's return value into an answer: None, str, bytes, JSON, or (status, any of those)."""
    if isinstance(reply, tuple) and len(reply) == 2 and type(reply[0]) is int and 100 <= reply[0] <= 599:
        return _render(reply[1])._replace(status=reply[0])
    if reply is None:
        return _Answer(200, "", {})
    if isinstance(reply, str):
        return _Answer(200, reply, {"content-type": "text/plain; charset=utf-8"})
    if isinstance(reply, (bytes, bytearray)):
        return _Answer(200, base64.b64encode(reply).decode("ascii"), {"content-type": "application/octet-stream"}, True)
    return _json_answer(200, reply)


def _run(handler: Handler, message: Message, record: dict[str, Any]) -> _Answer:
    try:
        answer = _render(handler(message))
    except NonRetryableError as err:
        record["outcome"] = "non_retryable"
        headers = {**_JSON, "Upstash-NonRetryable-Error": "true"}
        return _json_answer(NON_RETRYABLE_STATUS, {"error": "non_retryable", "message": str(err)}, headers)
    except Exception:  # noqa: BLE001 -- any failure of user code is a 500, so QStash retries.
        import traceback  # noqa: PLC0415 -- only on failure: keeps cold starts fast

        record.update(outcome="handler_error", traceback=traceback.format_exc())
        return _json_answer(500, {"error": "internal_error"})
    record["outcome"] = "ok"
    return answer


def _answer(
    event: object, handler: Handler, env: Mapping[str, str], now: float | None, record: dict[str, Any]
) -> _Answer:
    try:
        request = parse_lambda_event(event)
        message_id = request.headers.get("upstash-message-id")
        record.update(message_id=message_id and message_id[:MAX_LOGGED_ID], retried=_retry_count(request.headers))
        message = _verify_request(request, env, now)
    except EventError as err:
        record.update(outcome="bad_request", detail=str(err))
        return _json_answer(400, {"error": "not_http_event", "message": str(err)})
    except ConfigurationError as err:
        record.update(outcome="misconfigured", detail=str(err), variable=err.variable)
        return _json_answer(500, {"error": "server_misconfigured"})
    except SignatureError as err:
        record.update(outcome="rejected", reason=err.reason.value, detail=str(err))
        return _json_answer(401, {"error": err.reason.value})
    return _run(handler, message, record)


def _reason_phrase(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415 -- only ALBs want a phrase

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Non-Retryable Error" if status == NON_RETRYABLE_STATUS else "Unknown"


def _lambda_response(event: object, answer: _Answer) -> dict[str, Any]:
    """Shape the answer as the front door requires; any other shape becomes a 502 there."""
    response: dict[str, Any] = {
        "statusCode": answer.status,
        "headers": dict(answer.headers),
        "body": answer.body,
        "isBase64Encoded": answer.is_base64,
    }
    context = event.get("requestContext") if isinstance(event, dict) else None
    if isinstance(context, dict) and "elb" in context:
        response["statusDescription"] = f"{answer.status} {_reason_phrase(answer.status)}"
        if "multiValueHeaders" in event:  # type: ignore[operator]
            response["multiValueHeaders"] = {k: [v] for k, v in response.pop("headers").items()}
    return response


def serve_lambda(
    event: object, handler: Handler, *, environ: Mapping[str, str] | None = None, now: float | None = None
) -> dict[str, Any]:
    """Verify a Lambda HTTP event, run ``handler(message)`` and return the Lambda response.

    401 with {"error": reason} for a rejected delivery, 400 for a non-HTTP event, 500
    when keys are not configured or the handler raises, 489 for NonRetryableError.
    Prints one JSON log line per request, without keys, token or body.  Never raises.
    """
    started = time.perf_counter()
    record: dict[str, Any] = {"outcome": "", "reason": None, "message_id": None, "retried": None}
    answer = _answer(event, handler, os.environ if environ is None else environ, now, record)
    record.update(status=answer.status, duration_ms=round((time.perf_counter() - started) * 1000, 3))
    print(json.dumps(record), flush=True)
    return _lambda_response(event, answer)


# --- command line --------------------------------------------------------------------


def _read_body(args: Any) -> bytes:
    if args.body is not None:
        return args.body.encode("utf-8")  # type: ignore[no-any-return]
    if args.body_file == "-":
        return sys.stdin.buffer.read()
    with open(args.body_file, "rb") as file:
        return file.read()


def _cli_receiver(args: Any) -> Receiver:
    if args.current_key:
        return Receiver(args.current_key, args.next_key or None)
    return Receiver.from_env(region=args.region)


def _cli_sign(args: Any) -> int:
    key = args.key or _required(os.environ, CURRENT_KEY_VARIABLE)
    print(sign(key, url=args.url, body=_read_body(args), ttl=args.ttl))
    return 0


def _cli_verify(args: Any) -> int:
    receiver = _cli_receiver(args)
    try:
        claims = receiver.verify(
            signature=args.signature, body=_read_body(args), url=args.url, clock_tolerance=args.clock_tolerance
        )
    except SignatureError as err:
        print(f"rejected: {err}", file=sys.stderr)
        unverified = _unverified_claims(args.signature)
        if unverified is not None:
            print(f"unverified claims, for diagnosis only: {unverified}", file=sys.stderr)
        return 1
    print(json.dumps({"verified": True, "claims": claims._asdict()}, indent=2))
    return 0


def _unverified_claims(signature: str) -> str | None:
    """The token's payload as JSON text, not trusted, or None if it cannot be read."""
    try:
        return json.dumps(_json_object(_b64url_decode(_parse_token(signature)[1]), "payload"))
    except (SignatureError, ValueError):
        return None


def _parser() -> Any:
    import argparse  # noqa: PLC0415 -- the CLI only: keeps `import qstash_verify` fast

    parser = argparse.ArgumentParser(prog="qstash_verify.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    signer = commands.add_parser("sign", help="print a token for a URL and body, as QStash would send it")
    signer.add_argument("--key", help=f"signing key (default: ${CURRENT_KEY_VARIABLE})")
    signer.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="seconds the token is valid")
    verifier = commands.add_parser("verify", help="verify a token: print its claims, or the check that failed")
    verifier.add_argument("--signature", required=True, help="the Upstash-Signature header value")
    verifier.add_argument("--current-key", help=f"signing key (default: ${CURRENT_KEY_VARIABLE})")
    verifier.add_argument("--next-key", help=f"next signing key (default: ${NEXT_KEY_VARIABLE})")
    verifier.add_argument("--region", help="the Upstash-Region header, with QSTASH_REGION set")
    verifier.add_argument("--clock-tolerance", type=float, default=0.0, help="seconds of clock skew allowed")
    for command in (signer, verifier):
        command.add_argument("--url", required=command is signer, help="the URL QStash was asked to call")
        source = command.add_mutually_exclusive_group()
        source.add_argument("--body", help="the raw body as text")
        source.add_argument("--body-file", default="-", help="file holding the raw body ('-': stdin, the default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 verified or signed, 1 rejected, 2 usage)."""
    args = _parser().parse_args(argv)
    try:
        return _cli_sign(args) if args.command == "sign" else _cli_verify(args)
    except (ConfigurationError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
