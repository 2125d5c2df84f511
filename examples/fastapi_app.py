"""Receive QStash in FastAPI: `uvicorn examples.fastapi_app:app`.

Everything under /qstash (POST /qstash, POST /qstash/<path>) goes to qstash_verify's ASGI app;
the rest of the site stays FastAPI's.  Set QSTASH_CURRENT_SIGNING_KEY and
QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a public domain,
QSTASH_BASE_URL=https://hooks.example.com (see README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Message, asgi_app


async def handle(message: Message) -> object:
    return "ok"  # message.json(), message.message_id, ...: your code here (a plain def runs in a thread)


app = FastAPI()
hooks = asgi_app(handle)
app.router.add_route("/qstash", hooks, include_in_schema=False)  # the prefix alone: a mount would redirect it
app.mount("/qstash", hooks)
