"""Handled once with RedisStore, against Debian's redis-server (started on a free loopback port, stopped by PID).

The same guarantees as DynamoDBStore, at the Deduplicator level; `make test-integration` installs
redis-server and redis-py.  The rules every store shares run here too, from test_dedup.py.
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

import pytest
from conftest import ROOT, redis_client, start_redis, verified
from test_integration import stop

from qstash_verify import Claims, Deduplicator, DedupUnavailable, Reason, RedisStore, RetryLater, SignatureError

pytestmark = pytest.mark.integration


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def guard(redis_port: int, request: pytest.FixtureRequest) -> Deduplicator:
    """A Deduplicator over the shared server, with redis-py answering bytes or (decode_responses) text."""
    client = redis_client(redis_port, decode_responses=request.param)
    return Deduplicator(RedisStore(client, prefix=f"test-{uuid.uuid4()}:"))


def token() -> Claims:
    return verified(f"jwt_{uuid.uuid4()}", at=time.time())


def test_the_same_message_twice_is_handled_once(guard: Deduplicator) -> None:
    message_id = f"msg_{uuid.uuid4()}"
    with guard.once(token(), message_id) as fresh:
        assert fresh
    with guard.once(token(), message_id) as fresh:
        assert not fresh


def test_a_replayed_token_is_refused_as_replayed(guard: Deduplicator) -> None:
    claims = token()
    with guard.once(claims, f"msg_{uuid.uuid4()}") as fresh:
        assert fresh
    for message_id in (f"msg_{uuid.uuid4()}", None):
        with pytest.raises(SignatureError) as caught, guard.once(claims, message_id):
            pass
        assert caught.value.reason is Reason.REPLAYED


def test_a_failing_handler_releases_the_claim_and_the_retry_runs(guard: Deduplicator) -> None:
    message_id, attempts = f"msg_{uuid.uuid4()}", []

    def failing_handler() -> None:
        with guard.once(token(), message_id) as fresh:
            attempts.append(fresh)
            raise RuntimeError("database is down")

    with pytest.raises(RuntimeError):
        failing_handler()
    with guard.once(token(), message_id) as fresh:
        attempts.append(fresh)
    with guard.once(token(), message_id) as fresh:
        assert not fresh
    assert attempts == [True, True]


def test_twenty_threads_deliver_one_message_and_it_runs_once(guard: Deduplicator) -> None:
    message_id, ran, outcomes = f"msg_{uuid.uuid4()}", [], []
    claims = [token() for _ in range(20)]
    barrier = threading.Barrier(20)

    def deliver(copy: int) -> None:
        barrier.wait()
        try:
            with guard.once(claims[copy], message_id, lease=30) as fresh:
                if fresh:
                    ran.append(copy)
                    time.sleep(0.5)
                outcomes.append("ran" if fresh else "duplicate")
        except RetryLater as err:
            outcomes.append(f"busy {err.seconds}")

    threads = [threading.Thread(target=deliver, args=(copy,)) for copy in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ran) == 1
    assert len(outcomes) == 20
    assert outcomes.count("ran") == 1
    busy = {outcome for outcome in outcomes if outcome.startswith("busy")}
    assert set(outcomes) - busy <= {"ran", "duplicate"}, outcomes
    assert all(1 <= int(outcome.split()[1]) <= 31 for outcome in busy), outcomes  # until the lease ends


# A process delivering one copy: argv holds the server's port, the claims and the message id.
DELIVER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from conftest import redis_client
    from qstash_verify import Claims, Deduplicator, RedisStore, RetryLater
    port, claims, message_id, prefix, action = json.loads(sys.argv[1])
    guard = Deduplicator(RedisStore(redis_client(port), prefix=prefix))
    try:
        with guard.once(Claims(*claims), message_id, lease=2 if action == "die" else 30) as fresh:
            if fresh and action == "die":
                os._exit(3)  # the holder dies mid-handle, holding the claim
            if fresh:
                with open({ran!r}, "a") as file:
                    file.write(str(os.getpid()) + "\\n")
                time.sleep(1)
            print("ran" if fresh else "duplicate")
    except RetryLater:
        print("busy")
    """
)


def deliveries(redis_port: int, tmp_path: Path, message_id: str, copies: int, action: str = "run") -> list[str]:
    """What ``copies`` processes, each delivering ``message_id`` with its own token at once, printed."""
    script = DELIVER.format(root=str(ROOT), tests=str(ROOT / "tests"), ran=str(tmp_path / "ran"))
    prefix = f"test-{tmp_path.name}:"
    arguments = [json.dumps([redis_port, list(token()), message_id, prefix, action]) for _ in range(copies)]
    processes = [
        subprocess.Popen([sys.executable, "-c", script, argument], stdout=subprocess.PIPE, text=True)
        for argument in arguments
    ]
    return [process.communicate(timeout=60)[0].strip() for process in processes]


def test_twenty_processes_deliver_one_message_and_it_runs_once(redis_port: int, tmp_path: Path) -> None:
    outcomes = deliveries(redis_port, tmp_path, f"msg_{uuid.uuid4()}", 20)
    assert len((tmp_path / "ran").read_text().splitlines()) == 1
    assert outcomes.count("ran") == 1
    assert set(outcomes) <= {"ran", "duplicate", "busy"}, outcomes


def test_a_holder_killed_mid_handle_blocks_only_until_its_lease_ends(redis_port: int, tmp_path: Path) -> None:
    message_id = f"msg_{uuid.uuid4()}"
    assert deliveries(redis_port, tmp_path, message_id, 1, "die") == [""]  # os._exit: it printed nothing
    assert not (tmp_path / "ran").exists()
    assert deliveries(redis_port, tmp_path, message_id, 1) == ["busy"]
    time.sleep(2.1)
    assert deliveries(redis_port, tmp_path, message_id, 1) == ["ran"]
    assert len((tmp_path / "ran").read_text().splitlines()) == 1


def test_records_expire_with_their_lease_ttl_and_token(redis_port: int) -> None:
    client, prefix, message_id, claims = redis_client(redis_port), f"test-{uuid.uuid4()}:", "msg_ttl", token()
    guard = Deduplicator(RedisStore(client, prefix=prefix), ttl=3600)
    lease = guard.begin(claims, message_id, lease=45, clock_tolerance=30)
    assert lease is not None
    assert lease.key == f"message#{message_id}#{claims.body_hash}"
    assert 44_000 < client.pttl(prefix + lease.key) <= 45_000
    assert claims.expires_at + 30 - time.time() - 2 < client.ttl(f"{prefix}token#{claims.jwt_id}") <= 330
    assert guard.succeeded(lease) is True
    assert 3598 <= client.ttl(prefix + lease.key) <= 3600


def test_a_stopped_server_is_dedup_unavailable_and_the_handler_does_not_run() -> None:
    process, port = start_redis()
    guard, ran = Deduplicator(RedisStore(redis_client(port))), []
    with guard.once(token(), f"msg_{uuid.uuid4()}") as fresh:
        ran.append(fresh)
    stop(process)
    with pytest.raises(DedupUnavailable) as caught, guard.once(token(), f"msg_{uuid.uuid4()}") as fresh:
        ran.append(fresh)
    assert ran == [True]
    assert str(caught.value) == "Redis failed: ConnectionError on SET"
    assert caught.value.seconds == 10
