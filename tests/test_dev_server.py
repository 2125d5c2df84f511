"""dev/serve.py (make serve) and dev/demo.py (make demo): real HTTP on loopback into lambda_handler."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "dev"))

import serve

from qstash_verify import sign


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "QSTASH_REGION", "QSTASH_URL"):
        monkeypatch.delenv(name, raising=False)
    assert serve.use_dev_keys_if_unconfigured()
    httpd = serve.make_server(0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
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
