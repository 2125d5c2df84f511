"""A base64 Lambda body is read by one rule on every Python: exactly padded standard base64
(``[A-Za-z0-9+/]*={0,2}``, length divisible by 4) gives its bytes, anything else None."""

from __future__ import annotations

import base64
import itertools
import random
import re

import pytest

from qstash_verify import _base64_decoded

RULE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def by_the_rule(text: str) -> bytes | None:
    """The rule as written, decoded by the standard library's validating decoder."""
    if len(text) % 4 or not RULE.fullmatch(text):
        return None
    return base64.b64decode(text, validate=True)


TABLE = [
    ("", b""),
    ("QQ==", b"A"),
    ("QUI=", b"AB"),
    ("QUJD", b"ABC"),
    ("+/+/", b"\xfb\xff\xbf"),
    ("QR==", b"A"),  # unused low bits set: still the rule's (as strict_mode's)
    ("QUJDQQ==", b"ABCA"),
    ("QQ", None),  # unpadded
    ("QQ=", None),
    ("Q===", None),  # three "=" of padding
    ("====", None),
    ("QUJD====", None),
    ("=QUJ", None),  # "=" where data belongs
    ("QU=D", None),
    ("QQ==QQ==", None),  # data after padding
    ("QUJ-", None),  # the URL-safe alphabet
    ("QUJ_", None),
    ("QU D", None),  # white space, which binascii would skip
    ("QUJ\n", None),
    ("QUJDQ\nQ=", None),
    ("QUJé", None),  # beyond ASCII
    ("QUJ\x00", None),
    ("QUJ.", None),
    ("QUJDQUJD\r\n", None),
]


@pytest.mark.parametrize(("text", "decoded"), TABLE)
def test_the_table(text: str, decoded: bytes | None) -> None:
    assert by_the_rule(text) == decoded
    assert _base64_decoded(text) == decoded


# Data characters that end a quad in every way, padding, and what binascii skips or refuses.
ALPHABET = ["A", "Q", "/", "=", "-", "_", " ", "\n", "é"]


@pytest.mark.parametrize("length", range(9))
def test_every_short_string_over_a_small_alphabet(length: int) -> None:
    alphabet = ALPHABET if length <= 5 else ALPHABET[:5]  # 9^5 and 5^8 strings
    for characters in itertools.product(alphabet, repeat=length):
        text = "".join(characters)
        assert _base64_decoded(text) == by_the_rule(text), repr(text)


def test_random_strings_of_valid_base64_with_one_change() -> None:
    rng = random.Random(20240611)
    replacements = "=-_ \n\r\t.é\x00A+/"
    for _ in range(20000):
        valid = base64.b64encode(rng.randbytes(rng.randrange(40))).decode()
        position = rng.randrange(len(valid) + 1)
        changed = valid[:position] + rng.choice(replacements) + valid[position + rng.randrange(2) :]
        assert _base64_decoded(valid) == base64.b64decode(valid)
        assert _base64_decoded(changed) == by_the_rule(changed), repr(changed)
