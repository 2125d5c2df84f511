"""Handled once (issue #9): Deduplicator over each store, RetryLater, and the rules of the claim.

Tests taking ``store`` run on the in-process store here, and on Redis and DynamoDB Local in
`make test-integration`; they key everything by fresh ids and go by the real clock.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
import uuid
from typing import Any, Callable

import pytest
from conftest import BODY, CURRENT_KEY, NEXT_KEY, NOW, verified

from qstash_verify import (
    Deduplicator,
    DedupUnavailable,
    DynamoDBStore,
    Lease,
    MemoryStore,
    Reason,
    RedisStore,
    RetryLater,
    SignatureError,
)


def fresh(body: bytes = BODY) -> tuple[Any, str]:
    """Claims of a new token, verified now, and a new message id."""
    return verified(f"jwt_{uuid.uuid4()}", body, at=time.time()), f"msg_{uuid.uuid4()}"


def test_a_message_runs_once_and_a_duplicate_is_skipped() -> None:
    guard = Deduplicator(MemoryStore())
    lease = guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    assert isinstance(lease, Lease)
    assert guard.succeeded(lease, now=NOW) is True
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + 60) is None


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
    assert isinstance(guard.begin(verified("jwt_3"), "msg_1", now=NOW + 45), Lease)


def test_a_failure_releases_the_claim_so_the_retry_runs() -> None:
    guard = Deduplicator(MemoryStore())
    lease = guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    assert lease is not None
    assert guard.failed(lease) is True
    assert isinstance(guard.begin(verified("jwt_2"), "msg_1", now=NOW + 12), Lease)


def test_a_handled_message_is_forgotten_after_the_ttl() -> None:
    guard = Deduplicator(MemoryStore(), ttl=3600)
    lease = guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    assert lease is not None
    guard.succeeded(lease, now=NOW)
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + 3599) is None
    assert isinstance(guard.begin(verified("jwt_3"), "msg_1", now=NOW + 3600), Lease)


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


# --- every store: the message record is bound to the signed body, and leases have owners ---


def test_a_token_for_another_body_cannot_make_a_message_a_duplicate(store: Any) -> None:
    guard = Deduplicator(store)
    captured, message_id = fresh(b'{"another":"message"}')
    real, _ = fresh()
    with guard.once(captured, message_id) as fresh_run:  # a captured token, sent with the real message's id
        assert fresh_run
    with guard.once(real, message_id) as fresh_run:
        assert fresh_run  # the real message still runs
    with guard.once(fresh()[0], message_id) as fresh_run:
        assert not fresh_run  # and its own redelivery is the duplicate


SETTLE: dict[str, Callable[[Deduplicator, Lease], bool]] = {
    "succeeded": lambda guard, lease: guard.succeeded(lease),
    "failed": lambda guard, lease: guard.failed(lease),
}


@pytest.mark.parametrize("settle", list(SETTLE))
def test_a_holder_that_outlived_its_lease_cannot_settle_the_next_owners_claim(store: Any, settle: str) -> None:
    guard = Deduplicator(store)
    claims, message_id = fresh()
    late = guard.begin(claims, message_id, lease=0.5)
    time.sleep(0.6)
    current = guard.begin(fresh()[0], message_id, lease=60)  # the lease ended: a retry takes over
    assert late is not None
    assert current is not None
    assert SETTLE[settle](guard, late) is False  # a lost claim: not an error
    with pytest.raises(RetryLater):
        guard.begin(fresh()[0], message_id)  # the next owner still holds it
    assert guard.succeeded(current) is True
    assert guard.begin(fresh()[0], message_id) is None


def test_a_holder_that_outlived_its_lease_cannot_release_the_next_owners_claim_through_once(store: Any) -> None:
    guard = Deduplicator(store)
    claims, message_id = fresh()
    late = guard.once(claims, message_id, lease=0.5)
    assert late.__enter__()
    time.sleep(0.6)
    with guard.once(fresh()[0], message_id, lease=60) as current:
        assert current
        late.__exit__(RuntimeError, RuntimeError("late"), None)  # the late holder fails
        with pytest.raises(RetryLater):
            guard.begin(fresh()[0], message_id)


@pytest.mark.parametrize("settle", list(SETTLE))
def test_the_holder_settles_its_own_claim_once(store: Any, settle: str) -> None:
    guard = Deduplicator(store)
    lease = guard.begin(*fresh())
    assert lease is not None
    assert SETTLE[settle](guard, lease) is True
    assert guard.failed(lease) is (settle == "succeeded")  # released: nothing left to release


@pytest.mark.parametrize("settle", list(SETTLE))
def test_a_delivery_without_a_message_id_settles_trivially(store: Any, settle: str) -> None:
    guard = Deduplicator(store)
    lease = guard.begin(fresh()[0], None)
    assert lease is not None
    assert lease.key is None
    assert SETTLE[settle](guard, lease) is True


def test_every_claim_has_its_own_owner(store: Any) -> None:
    guard = Deduplicator(store)
    owners = {lease.owner for lease in (guard.begin(*fresh()) for _ in range(20)) if lease is not None}
    assert len(owners) == 20
    assert all(len(owner) >= 32 for owner in owners)


# --- numbers ---------------------------------------------------------------------------

BAD_SECONDS = [0, -1, -0.5, float("nan"), float("inf"), float("-inf"), True, False, "60", None]


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("option", ["ttl", "lease"])
def test_ttl_and_lease_must_be_positive_finite_seconds(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        Deduplicator(MemoryStore(), **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [v for v in BAD_SECONDS if v is not None])
def test_a_bad_lease_per_call_is_refused_before_the_token_is_used(value: object) -> None:
    guard = Deduplicator(MemoryStore())
    with pytest.raises(ValueError, match="lease"):
        guard.begin(verified("jwt_1"), "msg_1", lease=value, now=NOW)  # type: ignore[arg-type]
    assert guard.begin(verified("jwt_1"), "msg_1", now=NOW) is not None  # not "replayed"


@pytest.mark.parametrize(("ttl", "lease"), [(1, 1), (0.25, 0.001), (30 * 86_400, 900)])
def test_positive_finite_seconds_are_taken(ttl: float, lease: float) -> None:
    guard = Deduplicator(MemoryStore(), ttl=ttl, lease=lease)
    held = guard.begin(verified("jwt_1"), "msg_1", now=NOW)
    assert held is not None
    assert guard.succeeded(held, now=NOW) is True
    assert guard.begin(verified("jwt_2"), "msg_1", now=NOW + ttl - 0.001) is None
    assert guard.begin(verified("jwt_3"), "msg_1", now=NOW + ttl) is not None


# --- the stores fail closed, saying which error and which action, never the error's text ---


class FailingClient:
    """A client whose every call fails as ``error`` does: botocore's ClientError shape, or any exception."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def fail(*arguments: Any, **options: Any) -> Any:
            raise self.error

        return fail


class ClientError(Exception):
    def __init__(self, code: str, operation: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the {operation} operation: item s3cret")
        self.response = {"Error": {"Code": code, "Message": "item s3cret"}}
        self.operation_name = operation


class ConnectTimeoutError(Exception):
    pass


def begin(guard: Deduplicator) -> None:
    guard.begin(verified("jwt_1"), "msg_1", now=NOW)


def settle_with(call: str) -> Callable[[Deduplicator], None]:
    def run(guard: Deduplicator) -> None:
        getattr(guard, call)(Lease("message#msg_1", "owner"))

    return run


@pytest.mark.parametrize(
    ("error", "step", "words"),
    [
        (ClientError("AccessDeniedException", "PutItem"), begin, ["AccessDeniedException", "dynamodb:PutItem"]),
        (ClientError("AccessDeniedException", "PutItem"), settle_with("succeeded"), ["dynamodb:PutItem"]),
        (ClientError("AccessDeniedException", "DeleteItem"), settle_with("failed"), ["dynamodb:DeleteItem"]),
        (ClientError("ResourceNotFoundException", "PutItem"), begin, ["ResourceNotFoundException"]),
        (ConnectTimeoutError("connect timeout on endpoint s3cret"), begin, ["ConnectTimeoutError", "dynamodb:PutItem"]),
    ],
)
def test_a_table_failure_names_the_error_the_action_and_the_table(
    error: Exception, step: Callable[[Deduplicator], None], words: list[str]
) -> None:
    guard = Deduplicator(DynamoDBStore("qstash-dedup", client=FailingClient(error)))
    with pytest.raises(DedupUnavailable) as caught:
        step(guard)
    for word in ["the table qstash-dedup", *words]:
        assert word in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("step", "command"), [(begin, "SET"), (settle_with("succeeded"), "EVAL"), (settle_with("failed"), "EVAL")]
)
def test_a_redis_failure_is_dedup_unavailable_naming_the_error_and_the_command(
    step: Callable[[Deduplicator], None], command: str
) -> None:
    guard = Deduplicator(RedisStore(FailingClient(ConnectionError("redis://:s3cret@host"))))
    with pytest.raises(DedupUnavailable) as caught:
        step(guard)
    assert str(caught.value) == f"Redis failed: ConnectionError on {command}"
    assert caught.value.__cause__ is None
