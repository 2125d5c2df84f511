"""Receive QStash in Flask: `gunicorn examples.flask_app:app` (or `flask --app examples/flask_app.py run`).

Everything under /qstash (POST /qstash, POST /qstash/<path>) goes to qstash_verify's WSGI app,
mounted with Werkzeug's DispatcherMiddleware; the rest of the site stays Flask's.  Set
QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a public domain,
QSTASH_BASE_URL=https://hooks.example.com (see README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Message, wsgi_app


def handle(message: Message) -> object:
    return "ok"  # message.json(), message.message_id, ...: your code here


app = Flask(__name__)
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/qstash": wsgi_app(handle)})  # type: ignore[method-assign]
