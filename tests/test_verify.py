"""Receiver.verify against the rules of issue #2, one table per rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from typing import Any, Callable

import pytest
from conftest import (
    BODY,
    CURRENT_KEY,
    NEXT_KEY,
    NOW,
    ROOT,
    URL,
    b64url,
    b64url_decode,
    body_hash,
    claims,
    encode_segment,
    mint,
    reason_of,
)

from qstash_verify import MAX_TOKEN_BYTES, Claims, ConfigurationError, Reason, Receiver, SignatureError, sign

RECEIVER = Receiver(CURRENT_KEY, NEXT_KEY)
VALID = mint()


def verify(token: object, body: Any = BODY, url: str | None = URL, **kwargs: Any) -> Claims:
    kwargs.setdefault("now", NOW)
    return RECEIVER.verify(signature=token, body=body, url=url, **kwargs)  # type: ignore[arg-type]


def test_valid_token_returns_its_claims() -> None:
    result = verify(VALID)
    assert result == Claims("Upstash", URL, body_hash(BODY), NOW + 300.0, 0.0, float(NOW), "jwt_test")


def test_claims_are_read_only() -> None:
    with pytest.raises(AttributeError):
        verify(VALID).subject = "https://evil.example/"  # type: ignore[misc]


# Rule 1: text of bounded size, exactly three canonical base64url segments.
header_segment, payload_segment, mac_segment = VALID.split(".")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The MAC segment has 43 characters, so its last one carries 2 unused bits that must be 0:
# the next letter of the alphabet sets the lowest of them, spelling the same MAC another way.
NON_CANONICAL_MAC = mac_segment[:-1] + ALPHABET[ALPHABET.index(mac_segment[-1]) + 1]
MALFORMED = [
    ("empty", ""),
    ("one segment", header_segment),
    ("two segments", f"{header_segment}.{payload_segment}"),
    ("four segments", VALID + ".e30"),
    ("empty signature segment", f"{header_segment}.{payload_segment}."),
    ("empty header segment", f".{payload_segment}.{mac_segment}"),
    ("padding on signature", VALID + "="),
    ("padding on header", f"{header_segment}=.{payload_segment}.{mac_segment}"),
    ("standard base64 alphabet", VALID[:-1] + "+"),
    ("whitespace inside", VALID[:10] + " " + VALID[10:]),
    ("leading whitespace", " " + VALID),
    ("trailing newline", VALID + "\n"),
    ("non-ASCII letter", VALID[:-1] + "é"),
    ("full-width digit", VALID[:-1] + "１"),  # noqa: RUF001
    ("impossible length", VALID + "AA"),
    ("non-canonical trailing bits", f"{header_segment}.{payload_segment}.{NON_CANONICAL_MAC}"),
    ("header is not JSON", f"{b64url(b'not json')}.{payload_segment}.{mac_segment}"),
    ("header is a JSON list", f"{b64url(b'[]')}.{payload_segment}.{mac_segment}"),
    ("header is not UTF-8", f"{b64url(bytes([0xFF, 0xFE]))}.{payload_segment}.{mac_segment}"),
    ("oversized", "A" * (MAX_TOKEN_BYTES + 1)),
    ("oversized valid-looking", VALID + "." + "A" * MAX_TOKEN_BYTES),
]


@pytest.mark.parametrize(("name", "token"), MALFORMED, ids=[name for name, _ in MALFORMED])
def test_malformed_tokens_are_rejected(name: str, token: str) -> None:
    assert reason_of(lambda: verify(token)) is Reason.MALFORMED_TOKEN


def test_non_canonical_mac_decodes_to_the_same_mac() -> None:
    # Guards the table above: the only thing wrong with this token is its spelling.
    assert len(mac_segment) % 4 == 3
    assert b64url_decode(NON_CANONICAL_MAC) == b64url_decode(mac_segment)
    assert set(NON_CANONICAL_MAC) <= set(ALPHABET)


@pytest.mark.parametrize("token", [b"abc.def.ghi", 42, ["a", "b", "c"], bytearray(b"x")])
def test_non_string_signature_is_malformed(token: object) -> None:
    assert reason_of(lambda: verify(token)) is Reason.MALFORMED_TOKEN


def test_missing_header_is_its_own_reason() -> None:
    assert reason_of(lambda: verify(None)) is Reason.MISSING_SIGNATURE


def test_oversized_token_is_rejected_before_decoding() -> None:
    with pytest.raises(SignatureError) as caught:
        verify("A" * (MAX_TOKEN_BYTES + 1))
    assert "longer than" in str(caught.value)


def test_token_at_the_size_limit_is_still_parsed() -> None:
    long_url = URL + "?" + "q" * (MAX_TOKEN_BYTES // 2)
    token = mint(claims(sub=long_url))
    assert len(token) <= MAX_TOKEN_BYTES
    assert verify(token, url=long_url).subject == long_url


# Rule 2: the header's alg is exactly HS256 (and is never taken from the token).
ALGORITHMS = [
    ("none", {"alg": "none", "typ": "JWT"}),
    ("HS384", {"alg": "HS384", "typ": "JWT"}),
    ("HS512", {"alg": "HS512", "typ": "JWT"}),
    ("RS256", {"alg": "RS256", "typ": "JWT"}),
    ("lower case", {"alg": "hs256", "typ": "JWT"}),
    ("missing", {"typ": "JWT"}),
    ("null", {"alg": None}),
    ("list", {"alg": ["HS256"]}),
    ("trailing space", {"alg": "HS256 "}),
]


@pytest.mark.parametrize(("name", "header"), ALGORITHMS, ids=[name for name, _ in ALGORITHMS])
def test_algorithms_other_than_hs256_are_rejected(name: str, header: dict[str, Any]) -> None:
    assert reason_of(lambda: verify(mint(header=header))) is Reason.WRONG_ALGORITHM


def test_other_hs256_header_spellings_are_accepted() -> None:
    assert verify(mint(header={"typ": "JWT", "alg": "HS256"})).subject == URL
    assert verify(mint(header={"alg": "HS256"})).subject == URL


def test_critical_header_extensions_are_rejected() -> None:
    token = mint(header={"alg": "HS256", "crit": ["exp"]})
    assert reason_of(lambda: verify(token)) is Reason.MALFORMED_TOKEN


# Rule 3: HMAC-SHA256 with either key; a later check reports its own reason.
@pytest.mark.parametrize("key", [CURRENT_KEY, NEXT_KEY], ids=["current", "next"])
def test_both_keys_verify(key: str) -> None:
    assert verify(mint(key=key)).subject == URL


@pytest.mark.parametrize("key", ["sig_someone_else", CURRENT_KEY + "x", CURRENT_KEY[:-1], NEXT_KEY.upper()])
def test_other_keys_are_bad_signatures(key: str) -> None:
    assert reason_of(lambda: verify(mint(key=key))) is Reason.BAD_SIGNATURE


def test_receiver_without_next_key_rejects_next_key_tokens() -> None:
    receiver = Receiver(CURRENT_KEY)
    with pytest.raises(SignatureError) as caught:
        receiver.verify(signature=mint(key=NEXT_KEY), body=BODY, url=URL, now=NOW)
    assert caught.value.reason is Reason.BAD_SIGNATURE
    assert receiver.verify(signature=mint(), body=BODY, url=URL, now=NOW).subject == URL


def test_payload_swapped_under_a_valid_signature_is_rejected() -> None:
    forged = mint(claims(sub="https://evil.example/"), key="attacker")
    spliced = ".".join([forged.split(".")[0], forged.split(".")[1], VALID.split(".")[2]])
    assert reason_of(lambda: verify(spliced, url="https://evil.example/")) is Reason.BAD_SIGNATURE


LATER_FAILURES = [
    ("url", {}, {"url": "https://hooks.example.com/other"}, Reason.URL_MISMATCH),
    ("body", {}, {"body": b"tampered"}, Reason.BODY_MISMATCH),
    ("expired", {"exp": NOW - 1}, {}, Reason.EXPIRED),
    ("not yet valid", {"nbf": NOW + 10}, {}, Reason.NOT_YET_VALID),
    ("issuer", {"iss": "Downstash"}, {}, Reason.WRONG_ISSUER),
    ("claims", {"sub": 7}, {}, Reason.INVALID_CLAIMS),
]


@pytest.mark.parametrize("key", [CURRENT_KEY, NEXT_KEY], ids=["current", "next"])
@pytest.mark.parametrize(("name", "changes", "call", "reason"), LATER_FAILURES, ids=[c[0] for c in LATER_FAILURES])
def test_failures_after_a_matching_key_keep_their_reason(
    key: str, name: str, changes: dict[str, Any], call: dict[str, Any], reason: Reason
) -> None:
    token = mint(claims(**changes), key=key)
    assert reason_of(lambda: verify(token, **call)) is reason


def test_bad_signature_is_reported_before_any_claim_problem() -> None:
    token = mint(claims(iss="nobody", exp="soon", sub=1), key="attacker")
    assert reason_of(lambda: verify(token, body=b"other", url="https://x/")) is Reason.BAD_SIGNATURE


def test_signed_payload_that_is_not_a_json_object_is_malformed() -> None:
    for payload in (b"[]", b"not json", b'"Upstash"', bytes([0xC3, 0x28])):
        assert reason_of(lambda payload=payload: verify(mint(payload))) is Reason.MALFORMED_TOKEN


# Rule 4: claim types.
CLAIM_TYPES = [
    ("iss missing", {"iss": ...}),
    ("iss not a string", {"iss": 1}),
    ("sub missing", {"sub": ...}),
    ("sub not a string", {"sub": ["https://hooks.example.com/api/qstash"]}),
    ("body missing", {"body": ...}),
    ("body null", {"body": None}),
    ("body not a string", {"body": 12}),
    ("exp missing", {"exp": ...}),
    ("exp string", {"exp": str(NOW + 300)}),
    ("exp bool", {"exp": True}),
    ("exp null", {"exp": None}),
    ("exp list", {"exp": [NOW + 300]}),
    ("exp huge", {"exp": 10**400}),
    ("nbf missing", {"nbf": ...}),
    ("nbf string", {"nbf": "0"}),
    ("nbf bool", {"nbf": False}),
    ("iat string", {"iat": "now"}),
    ("jti number", {"jti": 5}),
]


@pytest.mark.parametrize(("name", "changes"), CLAIM_TYPES, ids=[name for name, _ in CLAIM_TYPES])
def test_missing_or_ill_typed_claims_are_rejected(name: str, changes: dict[str, Any]) -> None:
    assert reason_of(lambda: verify(mint(claims(**changes)))) is Reason.INVALID_CLAIMS


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_non_finite_times_are_rejected(claim: str, constant: str) -> None:
    payload = json.dumps(claims(**{claim: 1}), separators=(",", ":")).replace(f'"{claim}":1', f'"{claim}":{constant}')
    assert constant in payload
    assert reason_of(lambda: verify(mint(payload.encode()))) is Reason.INVALID_CLAIMS


def test_optional_and_unknown_claims() -> None:
    result = verify(mint(claims(iat=..., jti=..., extra={"x": 1}, aud="anything")))
    assert (result.issued_at, result.jwt_id) == (None, None)
    assert verify(mint(claims(exp=NOW + 0.5, nbf=1.5))).expires_at == NOW + 0.5


@pytest.mark.parametrize("issuer", ["upstash", "UPSTASH", "Upstash ", "", "Upstash\x00"])
def test_wrong_issuer_is_rejected(issuer: str) -> None:
    assert reason_of(lambda: verify(mint(claims(iss=issuer)))) is Reason.WRONG_ISSUER


# Rule 5: time, with a clock tolerance that really works.
TIMES = [
    # (exp, nbf, now, tolerance, expected reason or None)
    (NOW + 10, 0, NOW + 9, 0, None),
    (NOW + 10, 0, NOW + 10, 0, Reason.EXPIRED),
    (NOW + 10, 0, NOW + 11, 0, Reason.EXPIRED),
    (NOW + 10, 0, NOW + 14.9, 5, None),
    (NOW + 10, 0, NOW + 15, 5, Reason.EXPIRED),
    (NOW + 300, NOW, NOW, 0, None),
    (NOW + 300, NOW, NOW - 0.001, 0, Reason.NOT_YET_VALID),
    (NOW + 300, NOW + 30, NOW, 0, Reason.NOT_YET_VALID),
    (NOW + 300, NOW + 30, NOW, 30, None),
    (NOW + 300, NOW + 30, NOW, 29.5, Reason.NOT_YET_VALID),
]


@pytest.mark.parametrize(("exp", "nbf", "now", "tolerance", "reason"), TIMES)
def test_expiry_and_not_before(exp: float, nbf: float, now: float, tolerance: float, reason: Reason | None) -> None:
    token = mint(claims(exp=exp, nbf=nbf))
    if reason is None:
        assert verify(token, now=now, clock_tolerance=tolerance).expires_at == exp
    else:
        assert reason_of(lambda: verify(token, now=now, clock_tolerance=tolerance)) is reason


def test_default_clock_is_the_real_time() -> None:
    assert reason_of(lambda: RECEIVER.verify(signature=VALID, body=BODY, url=URL)) is Reason.EXPIRED
    import time

    fresh = mint(claims(exp=time.time() + 60))
    assert RECEIVER.verify(signature=fresh, body=BODY, url=URL).subject == URL


@pytest.mark.parametrize("tolerance", [-1, float("nan"), float("inf"), True, "5", None])
def test_invalid_clock_tolerance_is_a_caller_error(tolerance: object) -> None:
    with pytest.raises(ValueError, match="clock_tolerance"):
        verify(VALID, clock_tolerance=tolerance)


# Rule 6: URL equality after RFC 3986 section 6.2.2 syntax-based normalisation (issue #7), nothing more.
URLS = [
    (URL, URL, None),
    (URL + "?a=1&b=2", URL + "?a=1&b=2", None),
    ("https://hooks.example.com", "https://hooks.example.com/", None),
    ("https://hooks.example.com/", "https://hooks.example.com", None),
    ("https://hooks.example.com?a=1", "https://hooks.example.com/?a=1", None),
    (URL, URL.replace("https://hooks.example.com", "HTTPS://Hooks.Example.COM"), None),
    (URL, URL.replace("hooks.example.com", "hooks.example.com:443"), None),
    ("http://h.example/x", "http://h.example:80/x", None),
    ("https://h.example/caf%C3%A9", "https://h.example/caf%c3%a9", None),
    ("https://h.example/?q=%e2%9c%93", "https://h.example/?q=%E2%9C%93", None),
    ("https://h.example/%7Euser/a%2Db", "https://h.example/~user/a-b", None),
    ("https://h.example/~user?k=%41%5a%30%5F%2E", "https://h.example/~user?k=AZ0_.", None),
    # Syntax-based only: everything below names another resource, or may.
    (URL, URL + "/", Reason.URL_MISMATCH),
    (URL + "/", URL, Reason.URL_MISMATCH),
    (URL, URL + "//", Reason.URL_MISMATCH),
    (URL + "?to=alice/", URL + "?to=alice", Reason.URL_MISMATCH),
    (URL + "?to=alice", URL + "?to=alice/", Reason.URL_MISMATCH),
    ("https://h.example/a%2Fb", "https://h.example/a/b", Reason.URL_MISMATCH),
    ("https://h.example/?q=a+b", "https://h.example/?q=a%20b", Reason.URL_MISMATCH),
    ("https://h.example/a%20b", "https://h.example/a b", Reason.URL_MISMATCH),
    ("https://h.example/CAFE", "https://h.example/cafe", Reason.URL_MISMATCH),
    ("https://h.example/?Q=1", "https://h.example/?q=1", Reason.URL_MISMATCH),
    ("https://h.example:8443/x", "https://h.example/x", Reason.URL_MISMATCH),
    ("https://h.example:80/x", "https://h.example/x", Reason.URL_MISMATCH),
    ("http://h.example:443/x", "http://h.example/x", Reason.URL_MISMATCH),
    ("https://User@h.example/x", "https://user@h.example/x", Reason.URL_MISMATCH),
    (URL, URL.replace("https", "http"), Reason.URL_MISMATCH),
    (URL + "?a=1&b=2", URL + "?b=2&a=1", Reason.URL_MISMATCH),
    (URL + "?a=1", URL, Reason.URL_MISMATCH),
    (URL, URL + "?a=1", Reason.URL_MISMATCH),
    (URL, URL + "x", Reason.URL_MISMATCH),
    (URL, "", Reason.URL_MISMATCH),
    # Normalisation never makes a new escape: a stray "%" stays stray, whatever is decoded after it.
    ("https://h.example/hook?next=%2Fadmin", "https://h.example/hook?next=%2%46admin", Reason.URL_MISMATCH),
    ("https://h.example/%41", "https://h.example/%%34%31", Reason.URL_MISMATCH),
    ("https://h.example/%2F", "https://h.example/%%32F", Reason.URL_MISMATCH),
    ("https://h.example/100%", "https://h.example/100%25", Reason.URL_MISMATCH),
    ("https://h.example/100%", "https://h.example/100%", None),
    ("https://h.example/a%2", "https://h.example/a%2", None),
    ("https://h.example/%%7e", "https://h.example/%%7E", None),
]


@pytest.mark.parametrize(("subject", "url", "reason"), URLS)
def test_url_must_match_subject(subject: str, url: str, reason: Reason | None) -> None:
    # The rule is symmetric: a token signed for either URL is judged the same at the other.
    for signed, requested in ((subject, url), (url, subject)):
        token = mint(claims(sub=signed))
        if reason is None:
            assert verify(token, url=requested).subject == signed
        else:
            assert reason_of(lambda: verify(token, url=requested)) is reason  # noqa: B023 -- called at once


def _reference_tokens(text: str) -> list[tuple[str, str]]:
    """RFC 3986 6.2.2 read independently: well-formed triplets as bytes (unreserved ones decoded), all else literal."""
    tokens, i = [], 0
    while i < len(text):
        triplet = text[i : i + 3]
        if len(triplet) == 3 and triplet[0] == "%" and all(c in "0123456789abcdefABCDEF" for c in triplet[1:]):
            char = chr(int(triplet[1:], 16))
            tokens.append(
                ("char", char)
                if char.isascii() and (char.isalnum() or char in "-._~")
                else ("byte", triplet[1:].upper())
            )
            i += 3
        else:
            tokens.append(("char", text[i]))
            i += 1
    return tokens


def _spelled_otherwise(text: str, rng: random.Random) -> str:
    """``text`` with one well-formed triplet of an unreserved character written as that character."""
    spans, i = [], 0
    while i < len(text):
        triplet = text[i : i + 3]
        is_triplet = len(triplet) == 3 and triplet[0] == "%" and all(c in "0123456789abcdefABCDEF" for c in triplet[1:])
        if is_triplet and chr(int(triplet[1:], 16)).isalnum():
            spans.append(i)
        i += 3 if is_triplet else 1
    if not spans:
        return text
    at = rng.choice(spans)
    return text[:at] + chr(int(text[at + 1 : at + 3], 16)) + text[at + 3 :]


def test_normalisation_equates_exactly_what_the_rfc_does_on_random_paths() -> None:
    rng = random.Random(2026)
    alphabet = ["%", "2", "4", "F", "a", "~", "%46", "%34", "%32", "%41", "%7e", "%2F", "%2f"]
    for _ in range(6000):
        a = "".join(rng.choices(alphabet, k=rng.randint(0, 5)))
        for b in (_spelled_otherwise(a, rng), "".join(rng.choices(alphabet, k=rng.randint(0, 5)))):
            signed, requested = f"https://h.example/{a}", f"https://h.example/{b}"
            token = mint(claims(sub=signed))
            if _reference_tokens(a) == _reference_tokens(b):
                assert verify(token, url=requested).subject == signed
            else:
                assert reason_of(lambda: verify(token, url=requested)) is Reason.URL_MISMATCH  # noqa: B023


def test_url_none_skips_the_url_check() -> None:
    assert verify(mint(claims(sub="https://anywhere.example/")), url=None).subject == "https://anywhere.example/"


def test_url_mismatch_message_shows_both_urls() -> None:
    with pytest.raises(SignatureError) as caught:
        verify(VALID, url="https://hooks.example.com/wrong")
    assert URL in str(caught.value)
    assert "https://hooks.example.com/wrong" in str(caught.value)


# Rule 7: the body hash, constant-time, padding ignored, empty bodies checked.
def sha(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()


BODIES = [
    ("bytes", BODY, BODY, None),
    ("bytearray", BODY, bytearray(BODY), None),
    ("memoryview", BODY, memoryview(BODY), None),
    ("str", "grüße ✓".encode(), "grüße ✓", None),
    ("binary", bytes(range(256)), bytes(range(256)), None),
    ("empty", b"", b"", None),
    ("empty str", b"", "", None),
    ("empty body but signed non-empty", BODY, b"", Reason.BODY_MISMATCH),
    ("non-empty body but signed empty", b"", BODY, Reason.BODY_MISMATCH),
    ("one byte more", BODY, BODY + b" ", Reason.BODY_MISMATCH),
    ("str of other encoding", "grüße".encode("latin-1"), "grüße", Reason.BODY_MISMATCH),
    ("lone surrogate", b"x", "\ud800", Reason.BODY_MISMATCH),
]


@pytest.mark.parametrize(("name", "signed", "body", "reason"), BODIES, ids=[b[0] for b in BODIES])
def test_body_must_match_its_hash(name: str, signed: bytes, body: Any, reason: Reason | None) -> None:
    token = mint(claims(body=sha(signed)))
    if reason is None:
        assert verify(token, body=body).body_hash == sha(signed)
    else:
        assert reason_of(lambda: verify(token, body=body)) is reason


@pytest.mark.parametrize("claim", [sha(BODY).rstrip("="), sha(BODY) + "==", sha(BODY).rstrip("=") + "=="])
def test_body_claim_padding_is_not_significant(claim: str) -> None:
    assert verify(mint(claims(body=claim))).body_hash == claim


@pytest.mark.parametrize(
    "claim",
    [
        "",
        "=",
        sha(BODY).translate(str.maketrans("-_", "+/")),  # the right hash in the standard alphabet
        sha(BODY)[:-3],
        "\u00e9" * 43,
        "\ud800",
    ],
)
def test_other_body_claims_are_body_mismatches(claim: str) -> None:
    assert reason_of(lambda: verify(mint(claims(body=claim)))) is Reason.BODY_MISMATCH


@pytest.mark.parametrize("body", [None, 42, ["x"], {"a": 1}])
def test_body_of_wrong_type_is_a_caller_error(body: object) -> None:
    with pytest.raises(TypeError, match="body"):
        verify(VALID, body=body)


def test_url_of_wrong_type_is_a_caller_error() -> None:
    with pytest.raises(TypeError, match="url"):
        verify(VALID, url=b"https://hooks.example.com/api/qstash")  # type: ignore[arg-type]


def test_comparisons_go_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[type, type]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr("qstash_verify.hmac.compare_digest", spy)
    verify(mint(key=NEXT_KEY))
    assert seen == [(bytes, bytes)] * 3  # current key, next key, body hash


# Keys, errors and secrets.
@pytest.mark.parametrize(("current", "following"), [("", None), (None, None), (CURRENT_KEY, ""), (b"key", None)])
def test_empty_or_non_string_keys_are_configuration_errors(current: Any, following: Any) -> None:
    with pytest.raises(ConfigurationError):
        Receiver(current, following)


def test_secrets_never_appear_in_errors_or_repr() -> None:
    token = mint(claims(body=sha(b"secret body")))
    errors = []
    for call in (
        lambda: verify(token, body=b"the secret body contents"),
        lambda: verify(mint(key="other")),
        lambda: verify(token[:-2]),
        lambda: verify(mint(claims(exp=1))),
    ):
        with pytest.raises(SignatureError) as caught:
            call()
        errors.append(caught.value)
    for error in errors:
        text = str(error) + repr(error) + repr(error.args)
        for secret in (CURRENT_KEY, NEXT_KEY, token, token.split(".")[2], "secret body contents"):
            assert secret not in text
        assert not {"token", "body", "key"} & set(vars(error))
    assert CURRENT_KEY not in repr(RECEIVER)
    assert NEXT_KEY not in repr(RECEIVER)


def test_reason_codes_are_stable_strings() -> None:
    assert {reason.value for reason in Reason} == {
        "missing_signature",
        "malformed_token",
        "wrong_algorithm",
        "bad_signature",
        "invalid_claims",
        "wrong_issuer",
        "expired",
        "not_yet_valid",
        "url_mismatch",
        "body_mismatch",
        "replayed",
    }
    assert str(Reason.EXPIRED) == "expired"
    assert Reason.EXPIRED == "expired"


def reachable(error: BaseException) -> str:
    """Everything an exception lets one reach: its text, args, attributes, and its causes' too."""
    seen = []
    while error is not None:
        seen += [str(error), repr(error), repr(error.args), repr(vars(error)), repr(getattr(error, "object", ""))]
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return "".join(seen)


LEAKY_CALLS = [
    ("key with a lone surrogate", lambda: Receiver("sig_SECRET_KEY\ud83d"), "SECRET_KEY"),
    ("sign with such a key", lambda: sign("sig_SECRET_KEY\ud83d", url=URL, body=b""), "SECRET_KEY"),
    ("body with a lone surrogate", lambda: verify(VALID, body="SECRET_BODY\ud800"), "SECRET_BODY"),
    ("non-ASCII token", lambda: verify(VALID[:-1] + "é"), VALID[:-1]),
    ("header that is not JSON", lambda: verify(b64url(b"{SECRET_HEADER") + VALID[36:]), "SECRET_HEADER"),
]


@pytest.mark.parametrize(("name", "call", "secret"), LEAKY_CALLS, ids=[n for n, _, _ in LEAKY_CALLS])
def test_nothing_reachable_from_an_exception_holds_a_secret(name: str, call: Callable[[], object], secret: str) -> None:
    with pytest.raises((SignatureError, ConfigurationError)) as caught:
        call()
    assert secret not in reachable(caught.value)


@pytest.mark.parametrize("start", [0, 1])
def test_non_contiguous_memoryview_bodies_are_hashed(start: int) -> None:
    spread = bytearray(b"-" * (2 * len(BODY) + 1))
    spread[start : start + 2 * len(BODY) : 2] = BODY
    body = memoryview(bytes(spread))[start : start + 2 * len(BODY) : 2]
    assert not body.c_contiguous
    assert body.tobytes() == BODY
    token = mint(claims(body=body_hash(body.tobytes())))
    assert verify(token, body=body).subject == URL
    assert Receiver(CURRENT_KEY).verify(signature=sign(CURRENT_KEY, url=URL, body=body), body=body.tobytes())


def test_hmac_key_is_utf8_of_the_signing_key() -> None:
    key = "sig_ключ"
    signing_input = encode_segment({"alg": "HS256", "typ": "JWT"}) + "." + encode_segment(claims())
    mac = hmac.new(key.encode("utf-8"), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + b64url(mac)
    assert Receiver(key).verify(signature=token, body=BODY, url=URL, now=NOW).subject == URL


# Regression guards for the speed-ups: they must not change what is accepted.
@pytest.mark.parametrize("length", [0, 1, 31, 32, 63, 64, 65, 200])
def test_precomputed_hmac_equals_the_standard_library(length: int) -> None:
    from qstash_verify import _HmacSha256

    key = bytes(range(256))[:length] or b"\x00"
    for message in (b"", b"a", b"x" * 1000, VALID.encode()):
        assert _HmacSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_payload_with_whitespace_is_parsed_like_json_loads() -> None:
    payload = b"  " + json.dumps(claims(), indent=2).encode() + b"\n "
    assert verify(mint(payload)).subject == URL
    trailing = json.dumps(claims()).encode() + b" {}"
    assert reason_of(lambda: verify(mint(trailing))) is Reason.MALFORMED_TOKEN


def test_times_beyond_float_precision_are_invalid() -> None:
    assert verify(mint(claims(exp=2**53))).expires_at == 2**53
    assert reason_of(lambda: verify(mint(claims(exp=2**53 + 1)))) is Reason.INVALID_CLAIMS
    assert reason_of(lambda: verify(mint(claims(nbf=-(2**53) - 1)))) is Reason.INVALID_CLAIMS


def test_errors_survive_pickling() -> None:
    import pickle

    with pytest.raises(SignatureError) as caught:
        verify(mint(key="other"))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.reason, str(copy)) == (caught.value.reason, str(caught.value))
    with pytest.raises(ConfigurationError) as config:
        Receiver.from_env(environ={})
    restored = pickle.loads(pickle.dumps(config.value))
    assert (restored.variable, str(restored)) == ("QSTASH_CURRENT_SIGNING_KEY", str(config.value))


@pytest.mark.parametrize(("changes", "named"), [({"iss": 1}, "'iss'"), ({"exp": "1"}, "'exp'"), ({"jti": 2}, "'jti'")])
def test_invalid_claim_errors_name_the_claim(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(mint(claims(**changes)))
    assert named in str(caught.value)


def test_importing_loads_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules); import qstash_verify; "
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(result.stdout.split()) - {"qstash_verify"}
    assert {"json", "hmac", "hashlib"} <= loaded
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None:
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    assert loaded <= set(stdlib), loaded - set(stdlib)


NESTED = [
    # A nested list is never a header; a nested object parses on some Pythons and lacks "alg".
    (b"[" * 11000, {Reason.MALFORMED_TOKEN}),
    (b'{"a":' * 2000 + b"1" + b"}" * 2000, {Reason.MALFORMED_TOKEN, Reason.WRONG_ALGORITHM}),
]


@pytest.mark.parametrize(("header", "reasons"), NESTED, ids=["arrays", "objects"])
def test_deeply_nested_header_is_rejected_without_recursion_error(header: bytes, reasons: set[Reason]) -> None:
    token = f"{b64url(header)}.{payload_segment}.{mac_segment}"
    assert len(token) <= MAX_TOKEN_BYTES
    assert reason_of(lambda: verify(token)) in reasons
