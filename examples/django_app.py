"""Receive QStash in Django, as one file: `gunicorn examples.django_app:application`
(or `python examples/django_app.py runserver`).

Set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a
public domain, QSTASH_BASE_URL=https://hooks.example.com (see README.md).  Django
reads no chunked request body: QStash sends Content-Length, so that is fine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import re_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Receiver, SignatureError, url_from_wsgi

BASE_URL = os.environ.get("QSTASH_BASE_URL") or None
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex(),
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["localhost", "127.0.0.1", "[::1]", *([urlsplit(BASE_URL).hostname] if BASE_URL else [])],
    DATA_UPLOAD_MAX_MEMORY_SIZE=10 * 1024 * 1024 + 1024,  # 10 MB bodies (Django's default is 2.5 MB)
    MIDDLEWARE=[],  # no CSRF: the QStash signature is the authentication
)
django.setup()
receiver = Receiver.from_env()


def qstash(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    try:
        receiver.verify(
            signature=request.headers.get("Upstash-Signature"),
            body=request.body,  # the raw bytes, before any parsing
            url=url_from_wsgi(request.META, base_url=BASE_URL),
        )
    except SignatureError as err:
        return JsonResponse({"error": err.reason.value}, status=401)
    return HttpResponse("ok")


urlpatterns = [re_path(r"^qstash(?:/.*)?$", qstash)]
application = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
