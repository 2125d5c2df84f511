"""The one JSON log line per invocation: its fields, and never a secret."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from conftest import (
    CURRENT_KEY,
    DOORS,
    NEXT_KEY,
    invoke,
    load_event,
    set_header,
    signed_event,
    token_for,
)

import lambda_function

pytestmark = pytest.mark.usefixtures("lambda_keys")


def test_logs_and_answers_never_hold_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_body = b'{"card":"4111111111111111"}'
    url = DOORS["function_url"].url
    token = token_for(url, secret_body)
    cases: list[Callable[[dict[str, Any]], None]] = [
        lambda e: None,  # verified
        lambda e: e.update(body=e["body"] + " "),  # body mismatch
        lambda e: e["headers"].update({"upstash-signature": token[:-4] + "AAAA"}),  # bad signature
        lambda e: monkeypatch.delenv("QSTASH_NEXT_SIGNING_KEY"),  # misconfigured
    ]
    for change in cases:
        event = set_header(load_event("function_url"), "upstash-signature", token)
        event["body"] = secret_body.decode()
        change(event)
        response = lambda_function.lambda_handler(event, None)
        output = capsys.readouterr()
        everything = output.out + output.err + json.dumps(response)
        for secret in (CURRENT_KEY, NEXT_KEY, token, token.split(".")[2], "4111111111111111"):
            assert secret not in everything


def test_one_log_line_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    _, log = invoke(signed_event("alb"), capsys)
    assert {"outcome", "status", "reason", "message_id", "retried", "duration_ms"} <= set(log)
    assert (log["message_id"], log["retried"]) == ("msg_5", 3)
    assert isinstance(log["duration_ms"], float)


def test_the_log_line_has_exactly_the_documented_fields_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("| log field |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    _, log = invoke(signed_event("alb"), capsys)
    assert list(log) == documented


def test_the_log_line_carries_the_lambda_request_id_and_the_door(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    context = SimpleNamespace(aws_request_id="8f5c0a1e-request", function_name="hooks")
    lambda_function.lambda_handler(signed_event("rest_api"), context)
    log = json.loads(capsys.readouterr().out)
    assert (log["request_id"], log["door"], log["outcome"]) == ("8f5c0a1e-request", "rest_api", "ok")
    _, log = invoke(signed_event("rest_api"), capsys)
    assert log["request_id"] is None


def test_a_non_http_event_is_logged_without_a_door(capsys: pytest.CaptureFixture[str]) -> None:
    _, log = invoke({"Records": []}, capsys)
    assert (log["outcome"], log["door"], log["status"]) == ("bad_request", None, 400)
