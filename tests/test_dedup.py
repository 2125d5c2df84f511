"""Handled once (issue #9): Deduplicator over the in-process store, RetryLater, and the rules of the claim."""

from __future__ import annotations

import datetime
import json
import os
import threading
import time

import pytest
from conftest import CURRENT_KEY, NEXT_KEY, NOW, claims, mint

from qstash_verify import (
    Claims,
    Deduplicator,
    MemoryStore,
    Reason,
    Receiver,
    RetryLater,
    SignatureError,
)

RECEIVER = Receiver("sig_dedup_current", "sig_dedup_next")


def verified(jti: str = "jwt_1", **changes: object) -> Claims:
    token = mint(claims(jti=jti, **changes), key="sig_dedup_current")
    return RECEIVER.verify(signature=token, body=b'{"event":"order.created","id":42}', now=NOW)


def test_a_message_runs_once_and_a_duplicate_is_skipped() -> None:
    guard = Deduplicator(MemoryStore())
    assert guard.begin(verified("jwt_1"), "msg_1", now=NOW) is True
    guard.succeeded("msg_1", now=NOW)
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + 60) is False


def test_a_replayed_token_is_refused_whatever_the_message_id() -> None:
    guard = Deduplicator(MemoryStore())
    assert guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    for message_id in ("msg_1", "msg_fresh", None):
        with pytest.raises(SignatureError) as caught:
            guard.begin(verified("jwt_1"), message_id, now=NOW + 1)
        assert caught.value.reason is Reason.REPLAYED


def test_the_token_record_lives_until_exp_plus_the_clock_tolerance() -> None:
    store = MemoryStore()
    guard = Deduplicator(store)
    token = verified("jwt_1")
    assert guard.begin(token, None, clock_tolerance=30, now=NOW)
    with pytest.raises(SignatureError):
        guard.begin(token, None, now=token.expires_at + 29)
    assert guard.begin(token, None, now=token.expires_at + 30)  # the token itself is expired by then


def test_a_message_being_handled_answers_retry_later_until_its_lease_ends() -> None:
    guard = Deduplicator(MemoryStore())
    assert guard.begin(verified("jwt_1"), "msg_1", lease=45, now=NOW)
    with pytest.raises(RetryLater) as caught:
        guard.begin(verified("jwt_2"), "msg_1", now=NOW + 5)
    assert caught.value.seconds == 40
    # The claimer died: after the lease, a retry takes the message over.
    assert guard.begin(verified("jwt_3"), "msg_1", now=NOW + 45) is True


def test_a_failure_releases_the_claim_so_the_retry_runs() -> None:
    guard = Deduplicator(MemoryStore())
    assert guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    guard.failed("msg_1")
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + 12) is True


def test_a_handled_message_is_forgotten_after_the_ttl() -> None:
    guard = Deduplicator(MemoryStore(), ttl=3600)
    assert guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    guard.succeeded("msg_1", now=NOW)
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + 3599) is False
    assert guard.begin(verified("jwt_3"), "msg_1", now=NOW + 3600) is True


def test_once_marks_success_and_releases_on_error() -> None:
    guard = Deduplicator(MemoryStore())
    with guard.once(verified("jwt_1"), "msg_1", now=NOW) as fresh:
        assert fresh
    with guard.once(verified("jwt_2"), "msg_1", now=NOW) as fresh:
        assert not fresh

    def failing_handler() -> None:
        with guard.once(verified("jwt_3"), "msg_2", now=NOW) as fresh:
            assert fresh
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        failing_handler()
    with guard.once(verified("jwt_4"), "msg_2", now=NOW) as fresh:
        assert fresh  # released, so the retry runs


def test_twenty_threads_handle_one_message_once() -> None:
    guard = Deduplicator(MemoryStore())
    ran: list[int] = []
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def deliver(copy: int) -> None:
        start.wait()
        try:
            with guard.once(verified(f"jwt_{copy}"), "msg_1", now=NOW) as fresh:
                if fresh:
                    time.sleep(0.05)
                    ran.append(copy)
                outcomes.append("ran" if fresh else "duplicate")
        except RetryLater:
            outcomes.append("busy")

    threads = [threading.Thread(target=deliver, args=(copy,)) for copy in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(ran) == 1
    assert outcomes.count("ran") == 1
    assert len(outcomes) == 20


def test_memory_store_does_not_grow_with_dead_records() -> None:
    store = MemoryStore()
    guard = Deduplicator(store, ttl=1)
    for n in range(10_000):
        guard.begin(verified(f"jwt_{n}", exp=NOW + n + 1), None, now=NOW + n)
    assert len(store._records) < 3000


@pytest.mark.parametrize(("after", "seconds"), [(0, 0), (1, 1), (1.2, 2), (86_400, 86_400), (365.0, 365)])
def test_retry_later_takes_whole_seconds_up_to_a_day(after: float, seconds: int) -> None:
    assert RetryLater(after).seconds == seconds


def test_retry_later_takes_an_aware_datetime() -> None:
    moment = datetime.datetime.fromtimestamp(NOW + 90, tz=datetime.timezone.utc)
    assert RetryLater(moment, now=NOW).seconds == 90


@pytest.mark.parametrize("after", [-1, 86_401, float("inf"), float("nan"), 10**20])
def test_retry_later_beyond_qstashs_cap_or_in_the_past_is_refused(after: float) -> None:
    with pytest.raises(ValueError, match="RetryLater"):
        RetryLater(after)


@pytest.mark.parametrize("after", ["60", None, True, datetime.datetime(2026, 1, 1)])
def test_retry_later_needs_seconds_or_an_aware_datetime(after: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        RetryLater(after)  # type: ignore[arg-type]


def test_without_a_table_no_boto3_is_imported() -> None:
    import subprocess
    import sys

    from conftest import ROOT, signed_event

    code = (
        "import json, os, sys; sys.path.insert(0, {!r}); sys.path.insert(0, {!r})\n"
        "os.environ.update(QSTASH_CURRENT_SIGNING_KEY={!r}, QSTASH_NEXT_SIGNING_KEY={!r})\n"
        "import lambda_function\n"
        "assert lambda_function.lambda_handler(json.loads(sys.stdin.read()), None)['statusCode'] == 200\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))))\n"
    ).format(str(ROOT), str(ROOT / "tests"), CURRENT_KEY, NEXT_KEY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSTASH")}
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(signed_event("function_url")), capture_output=True,
        text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("[]")


def test_retry_errors_survive_pickling() -> None:
    import pickle

    from qstash_verify import DedupUnavailable

    later = pickle.loads(pickle.dumps(RetryLater(90.5)))
    assert (type(later), later.seconds, str(later)) == (RetryLater, 91, "retry after 91 s")
    down = pickle.loads(pickle.dumps(DedupUnavailable("the table t failed: ConnectTimeoutError")))
    assert (type(down), str(down), down.seconds) == (DedupUnavailable, "the table t failed: ConnectTimeoutError", 10)
