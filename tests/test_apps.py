"""wsgi_app and asgi_app (issue #14): every answer of the pipeline, over real HTTP on real servers.

wsgiref runs in this process in `make test`; gunicorn and uvicorn run as their own processes in
`make test-integration`.  The handler is tests/answer_app.py: the body says what it should do.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import logging
import os
import socketserver
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import answer_app
import pytest
from conftest import CURRENT_KEY, NEXT_KEY, ROOT, token_for

from qstash_verify import Receiver, wsgi_app


class Served(NamedTuple):
    name: str
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serve_in_thread(app: Any) -> tuple[Any, int]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return _Stoppable(server), server.server_port


class _Stoppable:
    """A server whose shutdown() also closes its socket (no ResourceWarning)."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def keys() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")}
    os.environ.update(QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY, QSTASH_NEXT_SIGNING_KEY=NEXT_KEY)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


SERVERS = {
    "gunicorn": [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}", "--threads", "4", "tests.answer_app:wsgi"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "--port", "{port}", "tests.answer_app:asgi"],
    "uvicorn-sync-handle": [sys.executable, "-m", "uvicorn", "--port", "{port}", "tests.answer_app:asgi_sync"],
}


@pytest.fixture(
    scope="module",
    params=["wsgiref", *(pytest.param(name, marks=pytest.mark.integration) for name in SERVERS)],
)
def served(request: pytest.FixtureRequest, keys: None) -> Iterator[Served]:
    if request.param == "wsgiref":
        server, port = serve_in_thread(answer_app.wsgi)
        yield Served("wsgiref", port)
        server.shutdown()
        return
    from test_integration import free_port, require, start, stop

    module = request.param.split("-")[0]
    require(f"the Python package {module}", __import__("importlib").util.find_spec(module) is not None)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = start([part.format(port=port) for part in SERVERS[request.param]], port, env)
    yield Served(request.param, port)
    stop(process)


def fresh_token(url: str, body: bytes) -> str:
    """A token as QStash signs each delivery: its own jti."""
    return token_for(url, body, jti=f"jwt_{uuid.uuid4().hex}")


def send(served: Served, body: bytes, *, method: str = "POST", target: str = "/qstash", token: str | None = "",
         message_id: str | None = None, host: str | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request; ``token`` "" signs it for its own URL, None sends none."""
    headers = {"Host": host or f"127.0.0.1:{served.port}", "Content-Type": "application/json"}
    if token is not None:
        headers["Upstash-Signature"] = token or fresh_token(served.origin + target, body)
    headers["Upstash-Message-Id"] = message_id or f"msg_{uuid.uuid4().hex}"
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        pairs = response.getheaders()
        names = [k.lower() for k, _ in pairs]
        assert len(names) == len(set(names)), pairs  # no header twice (a handler's and the default, say)
        return response.status, {k.lower(): v for k, v in pairs}, response.read()
    finally:
        connection.close()


ANSWERS = [
    # (action, status, headers the answer must have, body or None to skip)
    ("text", 200, {"content-type": "text/plain; charset=utf-8"}, b"plain text"),
    ("bytes", 200, {"content-type": "application/octet-stream"}, bytes(range(256))),
    ("none", 200, {}, b""),
    ("tuple", 202, {"x-trace": "1", "content-type": "text/plain; charset=utf-8"}, b"queued"),
    ("non_retryable", 489, {"upstash-nonretryable-error": "true"}, None),
    ("retry_later", 503, {"retry-after": "30"}, b'{"error": "retry_later"}'),
    ("crash", 500, {}, b'{"error": "internal_error"}'),
    ("status_as_text", 500, {}, b'{"error": "internal_error"}'),
    ("status_99", 500, {}, b'{"error": "internal_error"}'),
    ("status_600", 500, {}, b'{"error": "internal_error"}'),
    ("header_not_text", 500, {}, b'{"error": "internal_error"}'),
    ("header_with_newline", 500, {}, b'{"error": "internal_error"}'),
    # Found by the second outside review: each was a stray exception, a broken answer or a false "ok".
    ("cycle", 500, {}, b'{"error": "internal_error"}'),
    ("deep", 500, {}, b'{"error": "internal_error"}'),
    ("lone_surrogate", 500, {}, b'{"error": "internal_error"}'),
    ("nan", 500, {}, b'{"error": "internal_error"}'),
    ("content_length", 500, {}, b'{"error": "internal_error"}'),
    ("transfer_encoding", 500, {}, b'{"error": "internal_error"}'),
    ("connection", 500, {}, b'{"error": "internal_error"}'),
    ("twice", 500, {}, b'{"error": "internal_error"}'),
    ("html", 200, {"content-type": "text/html"}, b"<b>hi</b>"),
    ("no_content", 204, {}, b""),
    ("no_content_with_body", 500, {}, b'{"error": "internal_error"}'),
]


@pytest.mark.parametrize(("action", "status", "headers", "body"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_every_answer_of_the_handler(served: Served, action: str, status: int, headers: dict[str, str],
                                     body: bytes | None) -> None:  # fmt: skip
    got_status, got_headers, got_body = send(served, answer_app.body(action))
    assert got_status == status, got_body
    assert headers.items() <= got_headers.items()
    if body is not None:
        assert got_body == body
    assert "set-cookie" not in got_headers


def test_a_verified_delivery_reaches_handle_with_its_url(served: Served) -> None:
    status, _, answer = send(served, answer_app.body("ok"), target="/qstash/caf%C3%A9?a=1&b=%2F", message_id="msg_7")
    assert status == 200
    assert json.loads(answer) == {"received": "msg_7", "method_url": served.origin + "/qstash/caf%C3%A9?a=1&b=%2F"}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
def test_any_method_qstash_delivers_with_is_verified_like_a_post(served: Served, method: str) -> None:
    assert send(served, answer_app.body("text"), method=method)[0] == 200
    assert send(served, answer_app.body("text"), method=method, token=None)[0] == 401


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"token": None}, "missing_signature"),
        ({"token": "not.a.token"}, "malformed_token"),
        ({"target": "/other"}, "url_mismatch"),
    ],
)
def test_rejections_are_401_with_the_reason(served: Served, change: dict[str, Any], reason: str) -> None:
    body = answer_app.body("text")
    if "target" in change:
        change = {"target": "/other", "token": fresh_token(served.origin + "/qstash", body)}
    status, _, answer = send(served, body, **change)
    assert (status, json.loads(answer)) == (401, {"error": reason})


def test_a_changed_body_is_refused(served: Served) -> None:
    token = fresh_token(served.origin + "/qstash", answer_app.body("text"))
    status, _, answer = send(served, answer_app.body("crash"), token=token)
    assert (status, json.loads(answer)) == (401, {"error": "body_mismatch"})


def test_a_duplicate_is_skipped_and_a_replayed_token_refused(served: Served) -> None:
    body, message_id = answer_app.body("text", uuid.uuid4().hex), f"msg_{uuid.uuid4().hex}"
    assert send(served, body, message_id=message_id)[0] == 200
    status, _, answer = send(served, body, message_id=message_id)  # QStash's redelivery: a new token
    assert (status, json.loads(answer)) == (200, {"duplicate": True})
    token = fresh_token(served.origin + "/qstash", body)
    assert send(served, body, token=token)[0] == 200
    status, _, answer = send(served, body, token=token)  # the same token again, with a new message id
    assert (status, json.loads(answer)) == (401, {"error": "replayed"})


def test_a_failure_releases_the_claim_so_the_retry_runs(served: Served) -> None:
    message_id = f"msg_{uuid.uuid4().hex}"
    assert send(served, answer_app.body("crash", "1"), message_id=message_id)[0] == 500
    assert send(served, answer_app.body("crash", "1"), message_id=message_id)[0] == 500  # ran again


def test_a_message_being_handled_answers_503_in_progress(served: Served) -> None:
    body, message_id = answer_app.body("slow", uuid.uuid4().hex), f"msg_{uuid.uuid4().hex}"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, served, body, message_id=message_id)
        threading.Event().wait(0.5)
        answers = sorted([first, pool.submit(send, served, body, message_id=message_id)], key=lambda f: f.result()[0])
    # Whichever claimed first ran (1.5 s); the other was told to come back, never run twice.
    (ran, _, ran_body), (busy, busy_headers, busy_body) = (future.result() for future in answers)
    assert (ran, ran_body) == (200, b"slow done")
    assert (busy, json.loads(busy_body)) == (503, {"error": "in_progress"})
    assert 1 <= int(busy_headers["retry-after"]) <= 60


def test_over_the_body_limit_is_413(served: Served) -> None:
    body = b"x" * (answer_app.MAX_BODY_BYTES + 1)
    status, _, answer = send(served, body)
    assert (status, json.loads(answer)["error"]) == (413, "body_too_large")
    exactly = answer_app.body("text").ljust(answer_app.MAX_BODY_BYTES)
    assert send(served, exactly)[0] == 200  # exactly the limit is read


@pytest.mark.parametrize("host", ["x/admin", "h.example?a=1", "u@h.example"])
def test_a_host_that_is_no_host_is_400(served: Served, host: str) -> None:
    body = answer_app.body("text")
    status, _, answer = send(served, body, host=host, token=fresh_token(f"http://{host}/qstash", body))
    assert (status, json.loads(answer)["error"]) == (400, "bad_request")


# --- the log record, and configuration (in this process) ---------------------------------


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, Any]]]:
    return [(r.levelno, json.loads(r.getMessage())) for r in caplog.records if r.name == "qstash_verify"]


@pytest.mark.parametrize(
    ("action", "token", "level", "outcome"),
    [
        ("text", "", logging.INFO, "ok"),
        ("text", None, logging.WARNING, "rejected"),
        ("non_retryable", "", logging.WARNING, "non_retryable"),
        ("crash", "", logging.ERROR, "handler_error"),
    ],
)
def test_one_log_record_per_request_at_its_level(caplog: pytest.LogCaptureFixture, keys: None, action: str,
                                                 token: str | None, level: int, outcome: str) -> None:  # fmt: skip
    server, port = serve_in_thread(answer_app.wsgi)
    try:
        with caplog.at_level(logging.INFO, logger="qstash_verify"):
            send(Served("wsgiref", port), answer_app.body(action), token=token, message_id="msg_log")
    finally:
        server.shutdown()
    ((got_level, record),) = records(caplog)
    assert (got_level, record["outcome"], record["door"], record["message_id"]) == (level, outcome, "wsgi", "msg_log")
    assert list(record) == ["status", "outcome", "reason", "detail", "variable", "traceback", "message_id",
                            "retried", "door", "request_id", "duration_ms"]  # fmt: skip
    assert ("RuntimeError: boom" in (record["traceback"] or "")) is (action == "crash")


def test_a_url_mismatch_record_holds_both_urls_and_no_secret(caplog: pytest.LogCaptureFixture, keys: None) -> None:
    server, port = serve_in_thread(answer_app.wsgi)
    body = answer_app.body("text", "secret-nonce-4711")
    token = fresh_token("https://public.example/qstash", body)
    try:
        with caplog.at_level(logging.INFO, logger="qstash_verify"):
            send(Served("wsgiref", port), body, token=token)
    finally:
        server.shutdown()
    ((_, record),) = records(caplog)
    assert "https://public.example/qstash" in record["detail"]
    assert f"http://127.0.0.1:{port}/qstash" in record["detail"]
    text = caplog.text
    assert token not in text
    assert "secret-nonce-4711" not in text
    assert CURRENT_KEY not in text


def test_missing_keys_answer_500_and_the_record_names_the_variable(caplog: pytest.LogCaptureFixture) -> None:
    server, port = serve_in_thread(wsgi_app(answer_app.handle, environ={}))
    try:
        with caplog.at_level(logging.INFO, logger="qstash_verify"):
            status, _, answer = send(Served("wsgiref", port), answer_app.body("text"))
    finally:
        server.shutdown()
    assert (status, json.loads(answer)) == (500, {"error": "server_misconfigured"})
    ((level, record),) = records(caplog)
    assert (level, record["variable"]) == (logging.ERROR, "QSTASH_CURRENT_SIGNING_KEY")


def test_a_receiver_given_in_code_needs_no_environment() -> None:
    server, port = serve_in_thread(wsgi_app(answer_app.handle, receiver=Receiver(CURRENT_KEY), environ={}))
    try:
        assert send(Served("wsgiref", port), answer_app.body("text"))[0] == 200
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "options",
    [{"max_body_bytes": -1}, {"max_body_bytes": 1.5}, {"trusted_proxies": 1}, {"base_url": "hooks.example.com"},
     {"recevier": None}],
)  # fmt: skip
def test_bad_options_fail_when_the_app_is_made(options: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        wsgi_app(answer_app.handle, **options)


def test_the_injected_clock_reaches_the_guard_too() -> None:
    # The token is valid at NOW, long past: the replay record it leaves lives until its exp by that
    # clock, so the same token again is a replay; by the real clock the record would be dead already.
    from conftest import BODY, NOW, claims, mint

    from qstash_verify import Deduplicator, MemoryStore

    app = wsgi_app(answer_app.handle, receiver=Receiver(CURRENT_KEY), deduplicator=Deduplicator(MemoryStore()),
                   environ={}, now=NOW)  # fmt: skip
    server, port = serve_in_thread(app)
    served = Served("wsgiref", port)
    token = mint(claims(sub=served.origin + "/qstash"))
    try:
        assert send(served, BODY, token=token)[0] == 200
        status, _, answer = send(served, BODY, token=token)
    finally:
        server.shutdown()
    assert (status, json.loads(answer)) == (401, {"error": "replayed"})


@pytest.mark.parametrize("headers", [[(b"host",)], [("host", "h")], [(b"content-length", b"x")], "host"])
def test_an_asgi_scope_that_cannot_be_read_is_a_400_not_an_exception(headers: object) -> None:
    import asyncio

    from qstash_verify import asgi_app

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = asgi_app(answer_app.handle, receiver=Receiver(CURRENT_KEY), environ={})
    asyncio.run(app({"type": "http", "method": "POST", "path": "/q", "headers": headers}, receive, send))
    assert sent[0]["status"] == 400
