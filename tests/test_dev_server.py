"""dev/serve.py (make serve) and dev/demo.py (make demo): real HTTP on loopback into lambda_handler."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import QSTASH_VARIABLES, ROOT

sys.path.insert(0, str(ROOT / "dev"))

import serve

from qstash_verify import sign


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", *QSTASH_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    assert serve.use_dev_keys_if_unconfigured()
    httpd = serve.make_server(0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize("key", [serve.DEV_CURRENT_SIGNING_KEY, serve.DEV_NEXT_SIGNING_KEY])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b'{"a":1}', "application/json"), (bytes(range(256)), "application/octet-stream"), (b"", "text/plain")],
)
def test_signed_requests_are_served_and_tampered_ones_rejected(
    server: str, key: str, body: bytes, content_type: str
) -> None:
    url = f"{server}/api/qstash?tenant=7&kind=daily"
    headers = {"upstash-signature": sign(key, url=url, body=body), "content-type": content_type}
    status, _, answer = post(url, body, headers)
    assert status == 200, answer
    status, response_headers, answer = post(url, body + b"!", headers)
    assert (status, json.loads(answer)) == (401, {"error": "body_mismatch"})
    assert response_headers["content-type"] == "application/json"


def test_url_is_rebuilt_from_the_real_request(server: str) -> None:
    body = b"{}"
    signed_for = f"{server}/other"
    status, _, answer = post(
        f"{server}/api", body, {"upstash-signature": sign(serve.DEV_CURRENT_SIGNING_KEY, url=signed_for, body=body)}
    )
    assert (status, json.loads(answer)) == (401, {"error": "url_mismatch"})


def test_non_retryable_header_reaches_the_client(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import lambda_function
    from qstash_verify import NonRetryableError

    def refuse(message: Any) -> None:
        raise NonRetryableError("no")

    monkeypatch.setattr(lambda_function, "handle", refuse)
    url = f"{server}/x"
    status, headers, _ = post(
        url, b"{}", {"upstash-signature": sign(serve.DEV_CURRENT_SIGNING_KEY, url=url, body=b"{}")}
    )
    assert (status, headers["Upstash-NonRetryable-Error"]) == (489, "true")


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("application/json", b"{}", True),
        ("text/plain; charset=utf-8", "é".encode(), True),
        ("application/vnd.api+json", b"{}", True),
        ("application/octet-stream", b"abc", False),
        ("text/plain", b"\xff\xfe", False),
        ("", b"abc", False),
    ],
)
def test_function_url_event_encodes_non_text_bodies_in_base64(content_type: str, body: bytes, text: bool) -> None:
    event = serve.function_url_event(
        "POST", "/p%20q?a=1", {"content-type": content_type, "host": "h:1"}, body, "1.2.3.4"
    )
    assert event["isBase64Encoded"] is not text
    assert (event["body"].encode() if text else base64.b64decode(event["body"])) == body
    assert (event["rawPath"], event["rawQueryString"], event["version"]) == ("/p%20q", "a=1", "2.0")


def test_configured_keys_are_never_replaced() -> None:
    env = {"QSTASH_CURRENT_SIGNING_KEY": "mine"}
    assert not serve.use_dev_keys_if_unconfigured(env)
    assert env == {"QSTASH_CURRENT_SIGNING_KEY": "mine"}


def test_make_demo_shows_a_verified_and_a_rejected_delivery() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev" / "demo.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"outcome": "ok"' in result.stdout
    assert '"reason": "body_mismatch"' in result.stdout
    assert "demo passed" in result.stdout


# --- issue #8, 13-17: ordinary HTTP from real clients, over raw sockets ------------------


def raw_exchange(server: str, request: bytes, *, timeout: float = 10) -> bytes:
    """Send ``request`` as is on a fresh connection; return everything the server answers before closing."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def signed_request(server: str, path: str, body: bytes, extra: bytes = b"", *, url: str | None = None) -> bytes:
    token = sign(serve.DEV_CURRENT_SIGNING_KEY, url=url or f"{server}{path}", body=body)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {server.removeprefix('http://')}\r\nUpstash-Signature: {token}\r\n"
        "Connection: close\r\n"
    ).encode() + extra


def test_chunked_bodies_are_read(server: str) -> None:
    body = b'{"chunked":true,"pad":"' + b"x" * 70000 + b'"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:40000], body[40000:]))
    request = signed_request(server, "/hook", body, b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    assert status_of(raw_exchange(server, request)) == 200


@pytest.mark.parametrize(
    ("lengths", "status"),
    [(["abc"], 400), (["8, 8"], 400), (["8", "8"], 400), (["-1"], 400), (["1e3"], 400), (["9" * 30], 413),
     ([str(serve.MAX_BODY_BYTES + 1)], 413)],
)  # fmt: skip
def test_bad_content_lengths_get_an_answer_not_a_traceback(
    server: str, lengths: list[str], status: int, capfd: pytest.CaptureFixture[str]
) -> None:
    headers = b"".join(f"Content-Length: {value}\r\n".encode() for value in lengths)
    answer = raw_exchange(server, signed_request(server, "/hook", b"{}", headers + b"\r\n{}"), timeout=5)
    assert status_of(answer) == status
    assert "Traceback" not in capfd.readouterr().err
    assert status_of(raw_exchange(server, signed_request(server, "/hook", b"", b"\r\n"))) == 200  # still serving


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "GET", "PUT", "DELETE", "PATCH"])
def test_every_method_reaches_the_handler_as_behind_a_function_url(server: str, method: str) -> None:
    request = f"{method} /hook HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    answer = raw_exchange(server, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 401
    assert body == (b"" if method == "HEAD" else b'{"error": "missing_signature"}')
    assert b"content-length: 30" in head.lower()


def test_stalled_clients_are_dropped_after_the_socket_timeout(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve.LambdaRequestHandler, "timeout", 0.5)
    host, port = server.removeprefix("http://").split(":")
    stalled = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")  # and never the rest
        started = time.monotonic()
        for sock in stalled:
            while sock.recv(65536):  # the server closes: recv returns b"" (or an answer, then b"")
                pass
        assert time.monotonic() - started < 8
    finally:
        for sock in stalled:
            sock.close()


def test_fifty_concurrent_clients_are_all_served(server: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert serve.DevServer.request_queue_size >= 128
    request = signed_request(server, "/hook", b"{}", b"Content-Length: 2\r\n\r\n{}")
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: status_of(raw_exchange(server, request)), range(150)))
    assert answers == [200] * 150


def test_a_client_resetting_mid_body_is_one_log_line(server: str, capfd: pytest.CaptureFixture[str]) -> None:
    host, port = server.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    sock.close()
    time.sleep(0.5)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 1


def test_expect_100_continue_is_answered_at_once(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    body = b"x" * 100_000
    with socket.create_connection((host, int(port)), timeout=0.8) as sock:
        sock.sendall(signed_request(server, "/hook", body, b"Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"))
        assert sock.recv(64).startswith(b"HTTP/1.1 100")  # within 0.8 s, not after curl's 1 s wait
        sock.sendall(body)
        assert status_of(sock.recv(65536)) == 200


def test_a_proxys_forwarded_proto_is_kept(server: str) -> None:
    https_url = server.replace("http://", "https://") + "/hook"
    request = signed_request(server, "/hook", b"", b"X-Forwarded-Proto: https\r\n\r\n", url=https_url)
    assert status_of(raw_exchange(server, request)) == 200


def test_qstash_base_url_is_honoured(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSTASH_BASE_URL", "https://abc123.ngrok.app")
    request = signed_request(server, "/hook?a=1", b"", b"\r\n", url="https://abc123.ngrok.app/hook?a=1")
    assert status_of(raw_exchange(server, request)) == 200


def test_its_events_are_function_url_events() -> None:
    from qstash_verify import parse_lambda_event

    headers = {"host": "127.0.0.1:8080", "x-forwarded-proto": "http"}
    event = serve.function_url_event("POST", "/hook?a=1", headers, b"{}", "127.0.0.1")
    request = parse_lambda_event(event)
    assert (request.door, request.url) == ("function_url", "http://127.0.0.1:8080/hook?a=1")


# --- make serve PORT=...: a one-line error, not a traceback ------------------------------


@pytest.mark.parametrize("port", ["abc", "70000", "65536", "-1", "8080x", "1e3", "٣"])
def test_a_bad_port_is_a_one_line_error_and_exit_2(port: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev" / "serve.py")],
        env={**os.environ, "PORT": port}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"PORT must be a whole number from 0 to 65535, not {port!r}" in result.stderr


@pytest.mark.parametrize(("value", "port"), [("0", 0), ("8080", 8080), ("65535", 65535), ("09000", 9000)])
def test_good_ports_are_taken(value: str, port: int) -> None:
    assert serve.port_from(value) == port


# --- DNS rebinding: only loopback hosts (and QSTASH_BASE_URL's) reach the handler --------

BASE_URL = "https://abc123.ngrok.app"
ALLOWED_HOSTS = [
    None,  # HTTP/1.0 with no Host: no browser sends that
    "localhost", "localhost:8080", "LOCALHOST", "LocalHost:1",
    "127.0.0.1", "127.0.0.1:8080", "127.1.2.3:9",
    "[::1]", "[::1]:8080", "[0:0:0:0:0:0:0:1]:80",
]  # fmt: skip
REFUSED_HOSTS = [
    "localhost.evil.com", "127.0.0.1.nip.io", "evil.com", "evil.com:8080", "localhost:abc", "localhost:",
    "localhost:80:80", "localhost:99999", "localhost.", "[::1]x80", "[::1", "::1", "[127.0.0.1]", "127.1",
    "0.0.0.0", "128.0.0.1", "10.0.0.1:8080", "[::ffff:127.0.0.1]", "", "abc123.ngrok.app",
]  # fmt: skip
ALLOWED_WITH_BASE_URL = ["abc123.ngrok.app", "ABC123.ngrok.app:443", "localhost:8080"]
REFUSED_WITH_BASE_URL = ["abc123.ngrok.app.evil.com", "evil.ngrok.app", "xabc123.ngrok.app"]


def request_with_host(host: str | None) -> bytes:
    """An unsigned POST with a body: the handler, if it runs, answers 401 missing_signature."""
    if host is None:
        return b"POST /hook HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}"
    return f"POST /hook HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode()


@pytest.mark.parametrize(
    ("host", "base_url"),
    [(host, None) for host in ALLOWED_HOSTS] + [(host, BASE_URL) for host in ALLOWED_WITH_BASE_URL],
)
def test_loopback_hosts_and_the_base_urls_reach_the_handler(
    server: str, host: str | None, base_url: str | None, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if base_url:
        monkeypatch.setenv("QSTASH_BASE_URL", base_url)
    answer = raw_exchange(server, request_with_host(host))
    assert (status_of(answer), answer.partition(b"\r\n\r\n")[2]) == (401, b'{"error": "missing_signature"}')
    assert len(capfd.readouterr().out.splitlines()) == 1  # the handler's log line


@pytest.mark.parametrize(
    ("host", "base_url"),
    [(host, None) for host in REFUSED_HOSTS] + [(host, BASE_URL) for host in REFUSED_WITH_BASE_URL],
)
def test_other_hosts_are_refused_before_the_handler_runs(
    server: str, host: str, base_url: str | None, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    if base_url:
        monkeypatch.setenv("QSTASH_BASE_URL", base_url)
    answer = raw_exchange(server, request_with_host(host))  # the body is read: no reset, the answer arrives
    head, _, body = answer.partition(b"\r\n\r\n")
    assert (status_of(answer), body) == (403, b'{"error": "host_not_allowed"}')
    assert b"content-type: application/json" in head.lower()
    out, err = capfd.readouterr()
    assert out == ""  # no log line: the handler did not run
    assert len(err.splitlines()) == 1
    assert json.loads(err)["dev_server"].startswith(f"refused Host {host!r}")


def test_two_host_headers_are_refused(server: str, capfd: pytest.CaptureFixture[str]) -> None:
    request = b"POST /hook HTTP/1.1\r\nHost: localhost\r\nHost: evil.com\r\nContent-Length: 0\r\n\r\n"
    assert status_of(raw_exchange(server, request)) == 403
    assert capfd.readouterr().out == ""


def test_a_refused_host_keeps_the_connection_alive(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        answers = []
        for name in ("evil.com", "localhost"):
            sock.sendall(request_with_host(name).replace(b"Connection: close\r\n", b""))
            response = http.client.HTTPResponse(sock)
            response.begin()
            answers.append((response.status, response.read()))
    assert answers == [(403, b'{"error": "host_not_allowed"}'), (401, b'{"error": "missing_signature"}')]
