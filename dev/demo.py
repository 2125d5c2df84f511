"""`make demo`: a signed delivery is accepted, a tampered one rejected, through the real handler over HTTP."""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve

from qstash_verify import sign


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def step(title: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    print(f"\n{title}\n  POST {url}  body={body.decode()}")
    print("  handler log: ", end="", flush=True)
    status, answer = post(url, body, headers)
    print(f"  answer: {status} {answer}")
    return status, answer


def main() -> int:
    # The demo always signs with QStash's public dev keys, whatever this shell has configured.
    for name in [k for k in os.environ if "QSTASH" in k]:
        del os.environ[name]
    serve.use_dev_keys_if_unconfigured()
    server = serve.make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/qstash?demo=1"
    print(f"Local dev server: {url} (QStash dev signing keys)")
    body = json.dumps({"event": "order.created", "id": 42}).encode()
    headers = {
        "content-type": "application/json",
        "upstash-signature": sign(serve.DEV_CURRENT_SIGNING_KEY, url=url, body=body),
        "upstash-message-id": "msg_demo_1",
        "upstash-retried": "0",
    }
    try:
        good = step("1. A delivery signed with sign(), as QStash would send it:", url, body, headers)
        bad = step("2. The same delivery with the body changed in transit:", url, body.replace(b"42", b"43"), headers)
    finally:
        server.shutdown()
        server.server_close()
    if good[0] == 200 and bad == (401, '{"error": "body_mismatch"}'):
        print("\ndemo passed: the signed delivery got 200, the tampered one 401 body_mismatch.")
        return 0
    print("\ndemo FAILED: expected 200, then 401 body_mismatch.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
