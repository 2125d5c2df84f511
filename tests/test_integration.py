"""The framework examples under real servers over loopback, direct and behind a real nginx (issue #7).

`make test-integration` installs what these need; `make test` leaves them out.  Each server
is started on a free loopback port and stopped by its PID.  In CI (CI=true) a missing
component fails; elsewhere the test is skipped, saying what is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import ROOT, token_for

pytestmark = pytest.mark.integration

CURRENT, NEXT = "sig_integration_current", "sig_integration_next"
PUBLIC = "https://hooks.example.com"
MB = 1024 * 1024
# name -> the command that serves it on {port}, run from the repository root.
SERVERS = {
    "flask-gunicorn": [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}", "examples.flask_app:app"],
    "django-gunicorn": [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:{port}", "examples.django_app:application"],
    "fastapi-uvicorn": [sys.executable, "-m", "uvicorn", "--port", "{port}", "examples.fastapi_app:app"],
    "starlette-uvicorn": [sys.executable, "-m", "uvicorn", "--port", "{port}", "examples.starlette_app:app"],
    # The README's other way to run the Django example: wsgiref underneath, no raw target either.
    "django-runserver": [sys.executable, "examples/django_app.py", "runserver", "127.0.0.1:{port}", "--noreload"],
    # wsgiref keeps no raw target (like Django's runserver): the decoded path is encoded again.
    "flask-wsgiref": [
        sys.executable, "-c",
        "import sys; sys.path.insert(0, '.'); from wsgiref.simple_server import make_server, WSGIRequestHandler;"
        "from examples.flask_app import app; WSGIRequestHandler.log_message = lambda *a: None;"
        "make_server('127.0.0.1', {port}, app).serve_forever()",
    ],
}  # fmt: skip
# wsgiref-based servers pass a chunked body undecoded (QStash sends Content-Length, so deliveries
# are unaffected): the app cannot read it and says so with a 400.
NO_CHUNKED_BODIES = {"flask-wsgiref", "django-runserver"}
MODULES = {
    "flask-gunicorn": "flask",
    "django-gunicorn": "django",
    "fastapi-uvicorn": "fastapi",
    "starlette-uvicorn": "starlette",
    "flask-wsgiref": "flask",
    "django-runserver": "django",
}


def require(what: str, present: bool) -> None:
    """Fail in CI, skip elsewhere, when a component the test needs is missing."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (run `make test-integration`, which installs it)")
    pytest.skip(f"{what} is missing: `make test-integration` installs it")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.stderr and process.stderr.read()!r}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port} after {seconds} s")


def start(command: list[str], port: int, env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for(port, process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class Server(NamedTuple):
    name: str
    port: int
    public: str  # the origin QStash would be given for this server


def app_env(base_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSTASH")}
    env.update(QSTASH_CURRENT_SIGNING_KEY=CURRENT, QSTASH_NEXT_SIGNING_KEY=NEXT, PYTHONPATH=str(ROOT))
    if base_url:
        env["QSTASH_BASE_URL"] = base_url
    return env


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    name = request.param
    require(f"the Python package {MODULES[name]}", _importable(MODULES[name]))
    port = free_port()
    process = start([part.format(port=port) for part in SERVERS[name]], port, app_env(None))
    yield Server(name, port, f"http://127.0.0.1:{port}")
    stop(process)


def _importable(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, check=False).returncode == 0


def send(
    port: int, target: str, body: bytes, headers: dict[str, str], *, tls: bool = False, chunked: bool = False
) -> tuple[int, bytes]:
    """POST exactly ``target`` (no re-quoting) with ``body``; return (status, answer)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=60, context=context
        )
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        try:
            if chunked:
                connection.request("POST", target, body=iter([body]), headers=headers, encode_chunked=True)
            else:
                connection.request("POST", target, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server answered before reading the whole body and closed (wsgiref does, given a
            # chunked body), so its kernel reset the connection and the rest could not be sent.  As
            # HTTP/1.1 asks of a client still sending, stop and read the answer: it arrived before the
            # reset and is still there to read.  With no answer, getresponse() raises.
            pass
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answer_after_the_headers(listener: socket.socket, answer: bytes) -> None:
    """Like wsgiref given a chunked body: read only the headers, answer, close with request bytes unread."""
    connection, _ = listener.accept()
    with connection:
        received = b""
        while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
            received += chunk
        connection.sendall(answer)


@pytest.mark.parametrize("chunked", [True, False])
def test_send_returns_an_answer_given_before_the_body_was_read(chunked: bool) -> None:
    # The flake in test_chunked_bodies[flask-wsgiref]: the server's kernel resets the connection
    # while the client is still sending, and sending then fails with EPIPE or ECONNRESET.
    answer = b'HTTP/1.1 401 Unauthorized\r\nContent-Length: 25\r\n\r\n{"error":"body_mismatch"}'
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=answer_after_the_headers, args=(listener, answer))
        thread.start()
        try:
            result = send(listener.getsockname()[1], "/qstash", os.urandom(32 * MB), {}, chunked=chunked)
        finally:
            thread.join(timeout=30)
    assert result == (401, b'{"error":"body_mismatch"}')


BODIES = {
    "json": b'{"event":"order.created","id":42}',
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "utf-8": "Grüße, ✓ 東京".encode(),
    "1 MB": os.urandom(MB),
    "10 MB": os.urandom(10 * MB),
}
TARGETS = [
    "/qstash",
    "/qstash?pct=%E2%9C%93",
    "/qstash?callback=https%3A%2F%2Fexample.com%2Fcb%3Fa%3D1%26b%3D2",
    "/qstash?q=a+b&tag=x&tag=y",
    "/qstash/a%20b",
    "/qstash/caf%C3%A9",
    "/qstash/caf%c3%a9",
    "/qstash/%E2%9C%93",
    "/qstash/100%25",
    "/qstash/x;a=b",
    "/qstash/a+b",
    "/qstash/deep/er/path?x=%2F",
]


def deliver(server: Server, target: str, body: bytes, *, signed_for: str | None = None, tls: bool = False,
            chunked: bool = False, **changes: object) -> tuple[int, dict[str, str] | bytes]:  # fmt: skip
    token = token_for(signed_for or server.public + target, body, CURRENT, **changes)
    headers = {
        "Host": server.public.split("://")[1],
        "Upstash-Signature": token,
        "Content-Type": "application/octet-stream",
    }
    status, answer = send(server.port, target, body, headers, tls=tls, chunked=chunked)
    return status, (json.loads(answer) if status == 401 else answer)


@pytest.mark.parametrize("body", list(BODIES))
def test_signed_bodies_are_accepted(server: Server, body: str) -> None:
    assert deliver(server, "/qstash", BODIES[body]) == (200, b"ok")


@pytest.mark.parametrize("target", TARGETS)
def test_signed_urls_are_accepted_as_sent(server: Server, target: str) -> None:
    # Django's runserver included: the example takes /qstash before Django rewrites PATH_INFO as text.
    assert deliver(server, target, BODIES["json"]) == (200, b"ok")


def test_invalid_deliveries_get_401_with_their_reason(server: Server) -> None:
    url = server.public + "/qstash/a%20b"
    token = token_for(url, BODIES["json"], CURRENT)
    headers = {"Upstash-Signature": token}
    status, answer = send(server.port, "/qstash/a%20b", BODIES["json"] + b" ", headers)
    assert (status, json.loads(answer)) == (401, {"error": "body_mismatch"})
    assert deliver(server, "/qstash/a%20b", BODIES["json"], signed_for=url + "x")[1] == {"error": "url_mismatch"}
    expired = deliver(server, "/qstash", BODIES["json"], exp=int(time.time()) - 1)
    assert expired == (401, {"error": "expired"})
    assert deliver(server, "/qstash/b", b"{}", signed_for=server.public + "/qstash/a") == (
        401,
        {"error": "url_mismatch"},
    )


def test_chunked_bodies(server: Server) -> None:
    status, answer = deliver(server, "/qstash", BODIES["json"], chunked=True)
    if server.name in NO_CHUNKED_BODIES:
        # Documented in README.md: the body cannot be read, and the answer says so.
        assert status == 400
        assert json.loads(answer)["error"] == "bad_request"  # type: ignore[arg-type]
    else:
        assert (status, answer) == (200, b"ok")


def test_a_host_outside_djangos_allowed_hosts_is_refused(server: Server) -> None:
    body = BODIES["json"]
    token = token_for("http://evil.example/qstash", body, CURRENT)
    status, _ = send(server.port, "/qstash", body, {"Host": "evil.example", "Upstash-Signature": token})
    # The Django example checks ALLOWED_HOSTS first; the others trust Host, as README.md says.
    assert status == (400 if server.name.startswith("django") else 200)


# --- behind nginx, the TLS-terminating proxy for https://hooks.example.com, configured as README.md says ---

NGINX_SITE = """
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name hooks.example.com;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 11m;
        location /qstash {{
            proxy_pass http://127.0.0.1:{app_port};  # no URI part: the path reaches the app as sent
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
"""


def nginx_config(folder: Path, site: str) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user} worker_processes 1; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};"
        f"events {{ worker_connections 64; }} http {{ access_log off; {temp} {site} }}"
    )


@pytest.fixture(scope="module", params=["flask-gunicorn", "django-gunicorn", "fastapi-uvicorn"])
def behind_nginx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    require("nginx (Debian's package)", nginx is not None)
    require("openssl", shutil.which("openssl") is not None)
    require(f"the Python package {MODULES[request.param]}", _importable(MODULES[request.param]))
    folder = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.example.com",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    app_port, port = free_port(), free_port()
    app = start([part.format(port=app_port) for part in SERVERS[request.param]], app_port, app_env(PUBLIC))
    site = NGINX_SITE.format(port=port, app_port=app_port, cert=folder / "cert.pem", key=folder / "key.pem")
    (folder / "nginx.conf").write_text(nginx_config(folder, site))
    proxy = start([str(nginx), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"], port, {})
    yield Server(request.param, port, PUBLIC)
    stop(proxy)
    stop(app)


@pytest.mark.parametrize("target", TARGETS)
def test_behind_nginx_signed_urls_are_accepted(behind_nginx: Server, target: str) -> None:
    assert deliver(behind_nginx, target, BODIES["json"], tls=True) == (200, b"ok")


@pytest.mark.parametrize("body", ["empty", "binary", "utf-8", "10 MB"])
def test_behind_nginx_signed_bodies_are_accepted(behind_nginx: Server, body: str) -> None:
    assert deliver(behind_nginx, "/qstash", BODIES[body], tls=True) == (200, b"ok")


@pytest.mark.parametrize(
    "sent", [{"Forwarded": "host=partner.example;proto=https"}, {"X-Forwarded-Host": "partner.example"}]
)
def test_behind_nginx_a_client_cannot_choose_the_host(behind_nginx: Server, sent: dict[str, str]) -> None:
    body = BODIES["json"]
    headers = {"Upstash-Signature": token_for("https://partner.example/qstash", body, CURRENT), **sent}
    status, answer = send(behind_nginx.port, "/qstash", body, headers, tls=True)
    assert (status, json.loads(answer)) == (401, {"error": "url_mismatch"})


def test_behind_nginx_invalid_deliveries_get_401(behind_nginx: Server) -> None:
    internal = f"http://127.0.0.1:{behind_nginx.port}/qstash"
    assert deliver(behind_nginx, "/qstash", b"{}", signed_for=internal, tls=True) == (401, {"error": "url_mismatch"})
    expired = deliver(behind_nginx, "/qstash", b"{}", tls=True, exp=int(time.time()) - 1)
    assert expired == (401, {"error": "expired"})


# --- `make serve` under real clients (issue #8, 13-17) -----------------------------------


@pytest.fixture(scope="module")
def dev_server() -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSTASH")}
    process = start([sys.executable, "dev/serve.py"], port, {**env, "PORT": str(port)})
    yield Server("make serve", port, f"http://127.0.0.1:{port}")
    stop(process)


def dev_token(url: str, body: bytes) -> str:
    sys.path.insert(0, str(ROOT / "dev"))
    import serve

    from qstash_verify import sign

    return sign(serve.DEV_CURRENT_SIGNING_KEY, url=url, body=body)


def test_curl_chunked_and_expect_100_continue(dev_server: Server, tmp_path: Path) -> None:
    require("curl", shutil.which("curl") is not None)
    body = os.urandom(3 * MB)
    (tmp_path / "body").write_bytes(body)
    url = f"{dev_server.public}/hook?via=curl"
    for extra in (["-H", "Transfer-Encoding: chunked"], ["-H", "Expect: 100-continue"]):
        result = subprocess.run(
            ["curl", "-sS", "-v", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{tmp_path / 'body'}",
             "-H", f"Upstash-Signature: {dev_token(url, body)}", *extra, url],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.stdout == "200", result.stderr[-500:]
        if "Expect: 100-continue" in extra:
            assert "HTTP/1.1 100 Continue" in result.stderr


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_python_clients_sending_chunked_bodies(dev_server: Server, client: str) -> None:
    require(f"the Python package {client}", _importable(client))
    body = b'{"hello": "chunks"}' * 1000
    url = f"{dev_server.public}/hook"
    headers = {"Upstash-Signature": dev_token(url, body)}
    parts = [body[:7], body[7:]]
    if client == "requests":
        import requests

        status = requests.post(url, data=iter(parts), headers=headers, timeout=30).status_code
    else:
        import httpx

        status = httpx.post(url, content=iter(parts), headers=headers, timeout=30).status_code
    assert status == 200
