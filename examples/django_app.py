"""Receive QStash in Django, as one file: `gunicorn examples.django_app:application`
(or `python examples/django_app.py runserver`).

Everything under /qstash goes to qstash_verify's WSGI app before Django sees the request (Django
rewrites PATH_INFO as text, which would lose the path QStash signed), after the Host is checked
against ALLOWED_HOSTS as Django would; the rest of the site stays Django's.  Set
QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY; behind a proxy or on a public domain,
QSTASH_BASE_URL=https://hooks.example.com (see README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.urls import path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # where qstash_verify.py is

from qstash_verify import Message, wsgi_app

BASE_URL = os.environ.get("QSTASH_BASE_URL") or None
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or os.urandom(32).hex(),
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["localhost", "127.0.0.1", "[::1]", *([urlsplit(BASE_URL).hostname] if BASE_URL else [])],
    WSGI_APPLICATION=f"{__name__}.application",  # runserver serves the dispatcher below too
)
django.setup()


def handle(message: Message) -> object:
    return "ok"  # message.json(), message.message_id, ...: your code here


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the rest of the site")


urlpatterns = [path("", home)]
django_application = get_wsgi_application()
qstash = wsgi_app(handle)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    route = environ.get("PATH_INFO", "")
    if route != "/qstash" and not route.startswith("/qstash/"):
        return django_application(environ, start_response)
    domain, _ = split_domain_port(environ.get("HTTP_HOST", ""))
    if not validate_host(domain, settings.ALLOWED_HOSTS):  # the URL is rebuilt from Host: only allowed ones
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"host not allowed"]
    return qstash(environ, start_response)


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
