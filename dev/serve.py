"""Local dev server: each HTTP request becomes a Lambda Function URL event for lambda_handler.

    make serve                 # or: PORT=9000 python3 dev/serve.py

Standard library only; not part of lambda.zip.  With no signing keys in the
environment it uses the fixed public keys of QStash's local development server,
so `npx @upstash/qstash-cli dev` can publish to it with no configuration.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, MutableMapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lambda_function

# Published by Upstash for `qstash-cli dev`; they protect nothing.
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
DEFAULT_PORT = 8080
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
    host = headers.get("host", "localhost")
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": host.split(":")[0],
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


class LambdaRequestHandler(BaseHTTPRequestHandler):
    """Turns every request into a Function URL event and the handler's answer into the HTTP response."""

    server_version = "qstash-lambda-dev"

    def handle_any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        headers["x-forwarded-proto"] = "http"  # the real scheme of this plain-HTTP server
        event = function_url_event(self.command, self.path, headers, body, self.client_address[0])
        self.respond(lambda_function.lambda_handler(event, None))

    def respond(self, response: dict[str, Any]) -> None:
        body = response.get("body", "")
        payload = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
        self.send_response(response["statusCode"])
        for name, value in response.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any  # noqa: N815 -- http.server's names

    def log_message(self, format: str, *args: Any) -> None:
        # The handler already writes one JSON line per request.
        pass


def make_server(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), LambdaRequestHandler)


def main() -> int:
    port = int(os.environ.get("PORT", DEFAULT_PORT))
    if use_dev_keys_if_unconfigured():
        print("No signing keys configured: using QStash's local dev server keys (never use them in production).")
    try:
        server = make_server(port)
    except OSError as err:
        print(f"cannot listen on 127.0.0.1:{port} ({err.strerror}): try `make serve PORT=9000`", file=sys.stderr)
        return 1
    print(f"Serving lambda_function.lambda_handler on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)")
    print("QStash's local server can publish to it: npx @upstash/qstash-cli dev")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
