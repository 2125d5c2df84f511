"""Receiver.from_env: single-region and multi-region keys; missing ones fail closed, naming the variable."""

from __future__ import annotations

import json

import pytest
from conftest import NOW, error_of, invoke, signed_event

from qstash_verify import ConfigurationError, Reason, Receiver, SignatureError, sign

US, EU, DEFAULT = "sig_us_current", "sig_eu_current", "sig_default_current"
MULTI = {
    "QSTASH_REGION": "US_EAST_1",
    "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY": US,
    "US_EAST_1_QSTASH_NEXT_SIGNING_KEY": "sig_us_next",
    "EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY": EU,
    "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": "sig_eu_next",
}
SINGLE = {"QSTASH_CURRENT_SIGNING_KEY": DEFAULT, "QSTASH_NEXT_SIGNING_KEY": "sig_default_next"}


def accepts(receiver: Receiver, key: str) -> bool:
    try:
        receiver.verify(signature=sign(key, url="u", body=b"", now=NOW), body=b"", now=NOW)
    except SignatureError as err:
        assert err.reason is Reason.BAD_SIGNATURE
        return False
    return True


def test_single_region_uses_both_plain_keys() -> None:
    receiver = Receiver.from_env(environ=SINGLE)
    assert accepts(receiver, DEFAULT)
    assert accepts(receiver, "sig_default_next")
    assert not accepts(receiver, US)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SINGLE.items():
        monkeypatch.setenv(name, value)
    assert accepts(Receiver.from_env(), DEFAULT)


def test_region_header_is_ignored_without_qstash_region() -> None:
    receiver = Receiver.from_env(region="eu-central-1", environ={**SINGLE, **MULTI, "QSTASH_REGION": ""})
    assert accepts(receiver, DEFAULT)
    assert not accepts(receiver, EU)


@pytest.mark.parametrize(
    ("region", "key"),
    [("eu-central-1", EU), ("EU-CENTRAL-1", EU), ("eu_central_1", EU), ("us-east-1", US), (None, US), ("", US)],
)
def test_multi_region_selects_the_regions_keys(region: str | None, key: str) -> None:
    receiver = Receiver.from_env(region=region, environ=MULTI)
    assert accepts(receiver, key)
    assert not accepts(receiver, EU if key == US else US)


def test_known_region_without_keys_falls_back_to_the_plain_keys() -> None:
    environ = {**MULTI, **SINGLE}
    del environ["EU_CENTRAL_1_QSTASH_CURRENT_SIGNING_KEY"], environ["EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY"]
    receiver = Receiver.from_env(region="eu-central-1", environ=environ)
    assert accepts(receiver, DEFAULT)
    assert not accepts(receiver, US)


def test_known_region_without_any_keys_uses_the_primary_regions() -> None:
    environ = {k: v for k, v in MULTI.items() if not k.startswith("EU_")}
    assert accepts(Receiver.from_env(region="eu-central-1", environ=environ), US)


# Issue #8, 1 and 2: only QStash's regions select keys; any other header value gets the primary region's.
UNKNOWN_REGIONS = ["dev", "DEV", "ap-south-1", "attacker-was-here", "../../etc", "x" * 500, "eu-central-1\nUS_EAST_1"]


@pytest.mark.parametrize("region", UNKNOWN_REGIONS)
def test_a_region_qstash_does_not_have_never_selects_keys(region: str) -> None:
    dev_keys = {"DEV_QSTASH_CURRENT_SIGNING_KEY": "sig_public_dev", "DEV_QSTASH_NEXT_SIGNING_KEY": "x"}
    environ = {**MULTI, **SINGLE, **dev_keys}
    receiver = Receiver.from_env(region=region, environ=environ)
    assert accepts(receiver, US)
    assert not accepts(receiver, "sig_public_dev")
    assert not accepts(receiver, DEFAULT)


@pytest.mark.parametrize("region", [*UNKNOWN_REGIONS, "eu-central-1", None])
def test_no_header_causes_a_configuration_error_the_configuration_lacks(region: str | None) -> None:
    only_primary = {k: v for k, v in MULTI.items() if not k.startswith("EU_")}
    assert accepts(Receiver.from_env(region=region, environ=only_primary), US)


MISSING = [
    ({}, None, "QSTASH_CURRENT_SIGNING_KEY"),
    ({"QSTASH_CURRENT_SIGNING_KEY": "k"}, None, "QSTASH_NEXT_SIGNING_KEY"),
    ({"QSTASH_NEXT_SIGNING_KEY": "k"}, None, "QSTASH_CURRENT_SIGNING_KEY"),
    ({"QSTASH_CURRENT_SIGNING_KEY": "", "QSTASH_NEXT_SIGNING_KEY": "k"}, None, "QSTASH_CURRENT_SIGNING_KEY"),
    ({"QSTASH_REGION": "US_EAST_1"}, None, "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY"),
    ({"QSTASH_REGION": "US_EAST_1"}, "eu-central-1", "US_EAST_1_QSTASH_CURRENT_SIGNING_KEY"),
    ({"QSTASH_REGION": "us east 1!"}, None, "QSTASH_REGION"),
    ({"QSTASH_REGION": "AP_SOUTH_1", **SINGLE}, None, "QSTASH_REGION"),
    # Issue #8, 3: a region with a current key but no next key fails closed, whichever region the header names.
    ({**MULTI, "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": ""}, "eu-central-1", "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY"),
    ({**MULTI, "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": ""}, "us-east-1", "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY"),
    ({**MULTI, "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY": ""}, None, "EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY"),
    ({**SINGLE, "QSTASH_REGION": "US_EAST_1", "QSTASH_NEXT_SIGNING_KEY": ""}, None, "QSTASH_NEXT_SIGNING_KEY"),
    # Issue #8, 4: values that are not strings name their variable.
    ({**SINGLE, "QSTASH_NEXT_SIGNING_KEY": 5}, None, "QSTASH_NEXT_SIGNING_KEY"),
    ({**SINGLE, "QSTASH_REGION": b"US_EAST_1"}, None, "QSTASH_REGION"),
]


@pytest.mark.parametrize(("environ", "region", "variable"), MISSING)
def test_missing_configuration_names_the_variable(environ: dict[str, str], region: str | None, variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Receiver.from_env(region=region, environ=environ)
    assert caught.value.variable == variable
    assert variable in str(caught.value)


@pytest.mark.parametrize("region", [1, b"eu-central-1", ["eu"]])
def test_region_of_the_wrong_type_is_a_type_error_naming_region(region: object) -> None:
    with pytest.raises(TypeError, match="region"):
        Receiver.from_env(region=region, environ=MULTI)  # type: ignore[arg-type]


# A key mangled in copying (whitespace or quotes around it, a control character in it) would fail every
# delivery as bad_signature: it is refused at configuration, naming the variable, never showing the key.
SECRET = "sig_SECRET_3Fh7Kq9Lm2Np4Rs6"
KEY_SLIPS = [
    (SECRET + " ", "whitespace"),
    (SECRET + "\n", "whitespace"),
    (SECRET + "\r\n", "whitespace"),
    (" " + SECRET, "whitespace"),
    ("\t" + SECRET, "whitespace"),
    (SECRET + "\u00a0", "whitespace"),
    (f'"{SECRET}"', "quote"),
    (f"'{SECRET}'", "quote"),
    (f'"{SECRET}', "quote"),
    (f"{SECRET}'", "quote"),
    (SECRET[:8] + "\x00" + SECRET[8:], "control character"),
    (SECRET[:8] + "\x1b" + SECRET[8:], "control character"),
    (SECRET[:8] + "\x7f" + SECRET[8:], "control character"),
    (SECRET[:8] + "\x85" + SECRET[8:], "control character"),
    (SECRET[:8] + "\n" + SECRET[8:], "control character"),
]
SLIPPED_VARIABLES = [
    ("QSTASH_CURRENT_SIGNING_KEY", SINGLE),
    ("QSTASH_NEXT_SIGNING_KEY", SINGLE),
    ("EU_CENTRAL_1_QSTASH_NEXT_SIGNING_KEY", MULTI),
]


def assert_names_the_slip_not_the_key(error: ConfigurationError, what: str) -> None:
    text = str(error) + repr(error) + repr(error.args)
    assert what in text
    assert SECRET[4:] not in text
    assert SECRET[8:] not in text


@pytest.mark.parametrize(("key", "what"), KEY_SLIPS)
@pytest.mark.parametrize(("variable", "environ"), SLIPPED_VARIABLES)
def test_a_key_mangled_in_copying_is_refused_naming_the_variable(
    key: str, what: str, variable: str, environ: dict[str, str]
) -> None:
    for region in (None, "eu-central-1"):
        with pytest.raises(ConfigurationError) as caught:
            Receiver.from_env(region=region, environ={**environ, variable: key})
        assert caught.value.variable == variable
        assert variable in str(caught.value)
        assert_names_the_slip_not_the_key(caught.value, what)


@pytest.mark.parametrize(("key", "what"), KEY_SLIPS)
def test_a_key_mangled_in_copying_is_refused_by_receiver_and_sign(key: str, what: str) -> None:
    for call in (lambda: Receiver(key), lambda: Receiver(DEFAULT, key), lambda: sign(key, url="u", body=b"")):
        with pytest.raises(ConfigurationError) as caught:
            call()
        assert caught.value.variable is None
        assert_names_the_slip_not_the_key(caught.value, what)


@pytest.mark.parametrize("key", ["sig_with inner space", "sig_quote'inside", "k", "sig_\u00e9t\u00e9", "sig_\udcff"])
def test_keys_without_a_slip_are_accepted(key: str) -> None:
    assert accepts(Receiver.from_env(environ={**SINGLE, "QSTASH_CURRENT_SIGNING_KEY": key}), key)


@pytest.mark.parametrize(("key", "what"), KEY_SLIPS[:3] + KEY_SLIPS[6:7] + KEY_SLIPS[10:11])
def test_lambda_answers_500_for_a_mangled_key_and_logs_the_variable(
    key: str, what: str, lambda_keys: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", key.replace("\x00", "\x01"))  # the environment holds no NUL
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], error_of(response)) == (500, "server_misconfigured")
    assert (log["outcome"], log["variable"]) == ("misconfigured", "QSTASH_NEXT_SIGNING_KEY")
    assert what in log["detail"]
    assert SECRET[8:] not in json.dumps(log) + json.dumps(response)


# QSTASH_REGION takes exactly the names Upstash's docs give, the ones the regional key variables begin with.
@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "us_east_1", "US-EAST-1", " US_EAST_1", "US_EAST_1\n"])
def test_qstash_region_in_any_other_spelling_is_a_configuration_error(region: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Receiver.from_env(environ={**MULTI, "QSTASH_REGION": region})
    assert caught.value.variable == "QSTASH_REGION"
    assert "US_EAST_1" in str(caught.value)
    assert "EU_CENTRAL_1" in str(caught.value)


@pytest.mark.parametrize(("region", "key"), [("US_EAST_1", US), ("EU_CENTRAL_1", EU)])
def test_qstash_region_as_upstash_spells_it_selects_the_primary_region(region: str, key: str) -> None:
    assert accepts(Receiver.from_env(environ={**MULTI, "QSTASH_REGION": region}), key)
