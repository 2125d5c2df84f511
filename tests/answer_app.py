"""One QStash endpoint whose handler answers as the body asks: every answer the doors give, on real servers.

`gunicorn tests.answer_app:wsgi`, `uvicorn tests.answer_app:asgi`, or in-process (tests/test_apps.py).
Keys come from QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qstash_verify import (
    Deduplicator,
    MemoryStore,
    Message,
    NonRetryableError,
    RedisStore,
    RetryLater,
    asgi_app,
    wsgi_app,
)

MAX_BODY_BYTES = 64 * 1024
ran: list[str] = []  # what the handler ran, in this process: read by in-process tests
ran_lock = threading.Lock()


def handle(message: Message) -> Any:
    action = message.json().get("do", "ok") if message.body else "ok"
    with ran_lock:
        ran.append(action)
        if os.environ.get("ANSWER_APP_RAN_FILE"):  # every process appends: runs counted across workers
            with open(os.environ["ANSWER_APP_RAN_FILE"], "a", encoding="utf-8") as file:
                file.write(f"{message.message_id} {action}\n")
    return ACTIONS[action](message)


def _raise(error: Exception) -> Any:
    raise error


ACTIONS: dict[str, Any] = {
    "ok": lambda m: {"received": m.message_id, "method_url": m.url},
    "text": lambda m: "plain text",
    "bytes": lambda m: bytes(range(256)),
    "none": lambda m: None,
    "tuple": lambda m: (202, "queued", {"X-Trace": "1"}),
    "non_retryable": lambda m: _raise(NonRetryableError("cannot ever work")),
    "retry_later": lambda m: _raise(RetryLater(30)),
    "crash": lambda m: _raise(RuntimeError("boom")),
    "status_as_text": lambda m: ("200", "x"),
    "status_99": lambda m: (99, "x"),
    "status_600": lambda m: (600, "x"),
    "header_not_text": lambda m: (200, "x", {"X-N": 5}),
    "header_with_newline": lambda m: (200, "x", {"X-N": "a\r\nSet-Cookie: x=1"}),
    "slow": lambda m: time.sleep(1.5) or "slow done",
    "cycle": lambda m: _cycle(),
    "deep": lambda m: _deep(),
    "lone_surrogate": lambda m: "ok \ud800",
    "nan": lambda m: {"v": float("nan")},
    "content_length": lambda m: (200, "hello", {"Content-Length": "2"}),
    "transfer_encoding": lambda m: (200, "hello", {"Transfer-Encoding": "chunked"}),
    "connection": lambda m: (200, "hello", {"Connection": "close"}),
    "twice": lambda m: (200, "hello", {"X-A": "1", "x-a": "2"}),
    "html": lambda m: (200, "<b>hi</b>", {"Content-Type": "text/html"}),
    "no_content": lambda m: (204, None),
    "no_content_with_body": lambda m: (204, "body"),
}


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deep() -> list[Any]:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    return nested


async def handle_async(message: Message) -> Any:
    if message.body and message.json().get("do") == "slow":
        await asyncio.sleep(1.5)
        return "slow done"
    return handle(message)


def _options() -> dict[str, Any]:
    """A MemoryStore, or with ANSWER_APP_REDIS_PORT a RedisStore on that loopback Redis (shared by workers)."""
    store: Any = MemoryStore()
    if os.environ.get("ANSWER_APP_REDIS_PORT"):
        import redis

        client = redis.Redis(port=int(os.environ["ANSWER_APP_REDIS_PORT"]), socket_timeout=2, socket_connect_timeout=2)
        store = RedisStore(client, prefix=f"answer-app-{os.environ.get('ANSWER_APP_RUN', '')}:")
    return {"deduplicator": Deduplicator(store, lease=60), "max_body_bytes": MAX_BODY_BYTES}


wsgi = wsgi_app(handle, **_options())
asgi = asgi_app(handle_async, **_options())
asgi_sync = asgi_app(handle, **_options())
__all__ = ["asgi", "asgi_sync", "wsgi"]


def body(action: str, nonce: str = "") -> bytes:
    return json.dumps({"do": action, "nonce": nonce}).encode()
