"""Receive QStash in FastAPI: `uvicorn examples.fastapi_app:app`.

Set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a
public domain, QSTASH_BASE_URL=https://hooks.example.com (see README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Receiver, SignatureError, url_from_asgi

app = FastAPI()
receiver = Receiver.from_env()
BASE_URL = os.environ.get("QSTASH_BASE_URL") or None


@app.post("/qstash")
@app.post("/qstash/{rest:path}")
async def qstash(request: Request) -> Response:
    try:
        receiver.verify(
            signature=request.headers.get("upstash-signature"),
            body=await request.body(),  # the raw bytes, before any parsing
            url=url_from_asgi(request.scope, base_url=BASE_URL),
        )
    except SignatureError as err:
        return JSONResponse({"error": err.reason.value}, status_code=401)
    return PlainTextResponse("ok")
