"""wsgi_app and asgi_app handle each message once with RedisStore on a real Redis server (issue #14).

Several gunicorn workers (and uvicorn) share one Debian redis-server on a free loopback port;
the handler appends each run to a file, so runs are counted across processes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import answer_app
import pytest
from conftest import CURRENT_KEY, NEXT_KEY, ROOT, start_redis
from test_apps import Served, fresh_token, send
from test_integration import free_port, start, stop

pytestmark = pytest.mark.integration

SERVERS = {
    "gunicorn-3-workers": [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}", "-w", "3", "--threads", "4",
                           "tests.answer_app:wsgi"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "--port", "{port}", "tests.answer_app:asgi"],
}  # fmt: skip


class WithRedis(NamedTuple):
    served: Served
    ran_file: Path
    redis: object  # the redis-server process


@pytest.fixture(params=list(SERVERS))
def with_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WithRedis]:
    redis_process, redis_port = start_redis()
    port, ran_file = free_port(), tmp_path / "ran"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY,
        "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY,
        "ANSWER_APP_REDIS_PORT": str(redis_port),
        "ANSWER_APP_RAN_FILE": str(ran_file),
        "ANSWER_APP_RUN": uuid.uuid4().hex,
    }
    process = start([part.format(port=port) for part in SERVERS[request.param]], port, env)
    yield WithRedis(Served(request.param, port), ran_file, redis_process)
    stop(process)
    stop(redis_process)


def runs(ran_file: Path, message_id: str) -> int:
    lines = ran_file.read_text().splitlines() if ran_file.exists() else []
    return sum(line.split()[0] == message_id for line in lines)


def test_twenty_concurrent_deliveries_of_one_message_run_it_once(with_redis: WithRedis) -> None:
    body, message_id = answer_app.body("text", uuid.uuid4().hex), f"msg_{uuid.uuid4().hex}"
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: send(with_redis.served, body, message_id=message_id), range(20)))
    assert runs(with_redis.ran_file, message_id) == 1
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503}
    assert [answer for status, _, answer in answers if status == 200].count(b"plain text") == 1


def test_a_duplicate_is_skipped_a_replay_refused_and_a_failure_runs_again(with_redis: WithRedis) -> None:
    served, body = with_redis.served, answer_app.body("text", uuid.uuid4().hex)
    message_id = f"msg_{uuid.uuid4().hex}"
    assert send(served, body, message_id=message_id)[0] == 200
    assert json.loads(send(served, body, message_id=message_id)[2]) == {"duplicate": True}
    token = fresh_token(served.origin + "/qstash", body)
    assert send(served, body, token=token)[0] == 200
    assert json.loads(send(served, body, token=token)[2]) == {"error": "replayed"}
    crash, crash_id = answer_app.body("crash", uuid.uuid4().hex), f"msg_{uuid.uuid4().hex}"
    assert send(served, crash, message_id=crash_id)[0] == 500
    assert send(served, crash, message_id=crash_id)[0] == 500
    assert runs(with_redis.ran_file, crash_id) == 2  # the failure released the claim: the retry ran


def test_with_the_redis_server_stopped_the_answer_is_503_and_handle_does_not_run(with_redis: WithRedis) -> None:
    stop(with_redis.redis)  # type: ignore[arg-type]
    message_id = f"msg_{uuid.uuid4().hex}"
    status, headers, answer = send(with_redis.served, answer_app.body("text"), message_id=message_id)
    assert (status, json.loads(answer), headers["retry-after"]) == (503, {"error": "dedup_unavailable"}, "10")
    assert runs(with_redis.ran_file, message_id) == 0
