"""Receive QStash in Flask: `gunicorn examples.flask_app:app` (or `flask --app examples/flask_app.py run`).

Set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a
public domain, QSTASH_BASE_URL=https://hooks.example.com (see README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask import Flask, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Receiver, SignatureError, url_from_wsgi

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024 + 1024  # 10 MB bodies and then some
receiver = Receiver.from_env()
BASE_URL = os.environ.get("QSTASH_BASE_URL") or None


@app.post("/qstash")
@app.post("/qstash/<path:rest>")
def qstash(rest: str = "") -> tuple[object, int]:
    try:
        receiver.verify(
            signature=request.headers.get("Upstash-Signature"),
            body=request.get_data(),  # the raw bytes, before any parsing
            url=url_from_wsgi(request.environ, base_url=BASE_URL),
        )
    except SignatureError as err:
        return jsonify(error=err.reason.value), 401
    return "ok", 200
