"""Local dev server: each HTTP request becomes a Lambda Function URL event for lambda_handler.

    make serve                 # or: PORT=9000 python3 dev/serve.py

Standard library only; not part of lambda.zip.  With no signing keys in the
environment it uses the fixed public keys of QStash's local development server,
so `npx @upstash/qstash-cli dev` can publish to it with no configuration.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping, MutableMapping
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lambda_function

# Published by Upstash for `qstash-cli dev`; they protect nothing.
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
DEFAULT_PORT = 8080
# A Function URL takes request payloads up to 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_LINE_BYTES = 65536
SOCKET_TIMEOUT_SECONDS = 30
LISTEN_BACKLOG = 128
# Shaped like a Function URL's own domain, so the adapter names the door as it would in AWS.
LOCAL_DOMAIN = "local.lambda-url.localhost.on.aws"
TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


def use_dev_keys_if_unconfigured(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set the QStash dev keys when no signing keys are configured; return whether it did."""
    configured = [k for k in environ if k.endswith(("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"))]
    if configured or environ.get("QSTASH_REGION"):
        return False
    environ["QSTASH_CURRENT_SIGNING_KEY"] = DEV_CURRENT_SIGNING_KEY
    environ["QSTASH_NEXT_SIGNING_KEY"] = DEV_NEXT_SIGNING_KEY
    return True


def is_text(content_type: str, body: bytes) -> bool:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if not (kind.startswith(TEXT_TYPES) or kind.endswith(("+json", "+xml"))):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> dict[str, Any]:
    """A Lambda Function URL event (payload 2.0) for one HTTP request."""
    path, _, query = target.partition("?")
    text = is_text(headers.get("content-type", ""), body)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "localhost", **headers},  # the URL is rebuilt from Host
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": LOCAL_DOMAIN,
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": client, "userAgent": ""},
            "requestId": f"local-{time.time_ns()}",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": body.decode("utf-8") if text else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": not text,
    }


def host_is_allowed(host: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a request with this Host header may reach the handler.

    Only loopback names (localhost, 127.x.y.z, [::1]) and the host of QSTASH_BASE_URL, each with
    or without a port: a web page that rebinds its own domain to 127.0.0.1 sends its own name, so
    it cannot reach the handler, which the public dev keys would otherwise leave open to it.  A
    request with no Host at all (HTTP/1.0) comes from no browser, and is allowed.
    """
    if host is None:
        return True
    if host.startswith("["):  # an IPv6 literal
        name, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
    else:
        name, colon, digits = host.partition(":")
        port = colon + digits
    if port and not (port.startswith(":") and port[1:].isascii() and port[1:].isdigit() and int(port[1:]) <= 65535):
        return False
    name = name.lower()
    if name == "localhost" or name == base_url_host(environ):
        return True
    try:
        address = ipaddress.IPv6Address(name) if host.startswith("[") else ipaddress.IPv4Address(name)
    except ValueError:
        return False
    # [::1] only among IPv6 addresses: Python 3.13 counts IPv4-mapped ones as loopback, 3.12 does not.
    return address.is_loopback and getattr(address, "ipv4_mapped", None) is None


def base_url_host(environ: Mapping[str, str]) -> str | None:
    try:
        return urlsplit(environ.get("QSTASH_BASE_URL") or "").hostname
    except ValueError:  # the handler says what is wrong with it
        return None


class HttpError(Exception):
    """A request the dev server answers itself, as a Function URL would, before any Lambda event."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def content_length(values: list[str]) -> int:
    """The one Content-Length, a plain decimal count no larger than a Function URL accepts."""
    if len(values) != 1 or not (values[0].strip().isascii() and values[0].strip().isdigit()):
        raise HttpError(400, "Content-Length must be one decimal number")
    length = int(values[0])
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"the body is over {MAX_BODY_BYTES} bytes, the Lambda payload limit")
    return length


class LambdaRequestHandler(BaseHTTPRequestHandler):
    """Turns every request into a Function URL event and the handler's answer into the HTTP response."""

    server_version = "qstash-lambda-dev"
    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered at once
    timeout = SOCKET_TIMEOUT_SECONDS  # a stalled client cannot hold a thread forever

    def handle_any(self) -> None:
        try:
            body = self.read_body()
        except HttpError as err:
            self.close_connection = True  # the rest of the body was not read
            self.send_answer(err.status, {"content-type": "application/json"}, json.dumps({"error": str(err)}).encode())
            return
        # Checked once the body is read: closing on unread bytes would reset the connection, losing the answer.
        hosts = self.headers.get_all("host") or []
        if len(hosts) > 1 or not host_is_allowed(hosts[0] if hosts else None):
            self.log_error("refused Host %r: only loopback hosts and QSTASH_BASE_URL's are served", ", ".join(hosts))
            self.send_answer(403, {"content-type": "application/json"}, b'{"error": "host_not_allowed"}')
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        # A tunnel or proxy in front says how the client called; otherwise this server's plain HTTP.
        headers.setdefault("x-forwarded-proto", "http")
        event = function_url_event(self.command, self.path, headers, body, self.client_address[0])
        self.respond(lambda_function.lambda_handler(event, None))

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self.read_chunks()
        lengths = self.headers.get_all("content-length") or []
        return self.rfile.read(content_length(lengths)) if lengths else b""

    def read_chunks(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(MAX_LINE_BYTES)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "a chunk size is not hexadecimal") from None
            if size < 0 or len(body) + size > MAX_BODY_BYTES:
                raise HttpError(413, f"the body is over {MAX_BODY_BYTES} bytes, the Lambda payload limit")
            if size == 0:
                while self.rfile.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline(MAX_LINE_BYTES)  # the CRLF after the chunk

    def respond(self, response: dict[str, Any]) -> None:
        body = response.get("body", "")
        payload = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
        self.send_answer(response["statusCode"], response.get("headers", {}), payload)

    def send_answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # Every method reaches the handler, as behind a Function URL (QStash may use any of them).
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        # The handler already writes one JSON line per request.
        pass

    def log_error(self, format: str, *args: Any) -> None:
        print(json.dumps({"dev_server": format % args, "client": self.client_address[0]}), file=sys.stderr, flush=True)


class DevServer(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG  # 5, the default, resets connections under 50 concurrent clients
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets or vanishes mid-request is one line, not a traceback.
        error = sys.exc_info()[1]
        print(json.dumps({"dev_server": f"client went away: {type(error).__name__}", "client": client_address[0]}),
              file=sys.stderr, flush=True)  # fmt: skip


def make_server(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    return DevServer((host, port), LambdaRequestHandler)


def port_from(value: str) -> int:
    """PORT as a TCP port number (0 picks a free one); ValueError says what is wrong."""
    if not (value.isascii() and value.isdigit() and int(value) <= 65535):
        raise ValueError(f"PORT must be a whole number from 0 to 65535, not {value!r}")
    return int(value)


def main() -> int:
    try:
        port = port_from(os.environ.get("PORT") or str(DEFAULT_PORT))
    except ValueError as err:
        print(f"{err}: try `make serve PORT=9000`", file=sys.stderr)
        return 2
    if use_dev_keys_if_unconfigured():
        print("No signing keys configured: using QStash's local dev server keys (never use them in production).")
    try:
        server = make_server(port)
    except OSError as err:
        print(f"cannot listen on 127.0.0.1:{port} ({err.strerror}): try `make serve PORT=9000`", file=sys.stderr)
        return 1
    print(f"Serving lambda_function.lambda_handler on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)")
    other = DEFAULT_PORT + 1 if server.server_port == DEFAULT_PORT else DEFAULT_PORT  # the CLI's own default is 8080
    print(f"QStash's local server can publish to it: npx @upstash/qstash-cli dev -port={other}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
