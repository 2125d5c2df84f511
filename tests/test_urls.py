"""url_from_wsgi and url_from_asgi (issue #7): the raw target, the decoded path encoded again, trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest

from qstash_verify import ConfigurationError, EventError, url_from_asgi, url_from_wsgi


def wsgi(**extra: Any) -> dict[str, Any]:
    environ = {"wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h.example",
               "SCRIPT_NAME": "", "PATH_INFO": "/qstash", "QUERY_STRING": ""}  # fmt: skip
    environ.update(extra)
    return environ


def asgi(**extra: Any) -> dict[str, Any]:
    scope = {"type": "http", "scheme": "http", "server": ("127.0.0.1", 8000), "path": "/qstash",
             "raw_path": b"/qstash", "query_string": b"", "headers": [(b"host", b"h.example")]}  # fmt: skip
    scope.update(extra)
    return scope


@pytest.mark.parametrize(
    ("extra", "url"),
    [
        ({"RAW_URI": "/caf%c3%a9?q=a+b&x=%2F"}, "http://h.example/caf%c3%a9?q=a+b&x=%2F"),
        ({"REQUEST_URI": "/a%20b;x=y?pct=%E2%9C%93"}, "http://h.example/a%20b;x=y?pct=%E2%9C%93"),
        # PEP 3333: PATH_INFO is the decoded path's bytes as latin-1 characters.
        ({"PATH_INFO": "/caf\xc3\xa9/a b/100%", "QUERY_STRING": "q=%E2%9C%93"},
         "http://h.example/caf%C3%A9/a%20b/100%25?q=%E2%9C%93"),
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "/qstash"}, "http://h.example/app/qstash"),
        ({"HTTP_HOST": None}, "http://127.0.0.1:8000/qstash"),
        ({"RAW_URI": "*"}, "http://h.example/qstash"),  # not a path: the decoded one is used
    ],
)  # fmt: skip
def test_wsgi_url_keeps_the_raw_target_or_encodes_the_path_again(extra: dict[str, Any], url: str) -> None:
    environ = {k: v for k, v in wsgi(**extra).items() if v is not None}
    assert url_from_wsgi(environ) == url


@pytest.mark.parametrize(
    ("extra", "url"),
    [
        ({"raw_path": b"/a%20b", "path": "/a b", "query_string": b"x=%2F&y=+"}, "http://h.example/a%20b?x=%2F&y=+"),
        ({"raw_path": None, "path": "/café/a b"}, "http://h.example/caf%C3%A9/a%20b"),
        ({"raw_path": b"/caf\xc3\xa9"}, "http://h.example/caf%C3%A9"),  # raw UTF-8 in the target
        ({"headers": []}, "http://127.0.0.1:8000/qstash"),
        ({"scheme": "https", "headers": [(b"host", b"h.example:8443")]}, "https://h.example:8443/qstash"),
    ],
)
def test_asgi_url_keeps_the_raw_path_or_encodes_the_path_again(extra: dict[str, Any], url: str) -> None:
    assert url_from_asgi(asgi(**extra)) == url


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://hooks.example.com", "https://hooks.example.com/qstash/x?a=1"),
        ("https://hooks.example.com/", "https://hooks.example.com/qstash/x?a=1"),
        ("https://hooks.example.com/hooks", "https://hooks.example.com/hooks/qstash/x?a=1"),
    ],
)
def test_a_base_url_replaces_scheme_and_host_and_keeps_path_and_query(base_url: str, url: str) -> None:
    assert url_from_wsgi(wsgi(RAW_URI="/qstash/x?a=1"), base_url=base_url) == url
    assert url_from_asgi(asgi(raw_path=b"/qstash/x", query_string=b"a=1"), base_url=base_url) == url


@pytest.mark.parametrize(
    "base_url", ["hooks.example.com", "ftp://h.example", "https://", "https://h/?a=1", "https://h/#x"]
)
def test_a_bad_base_url_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        url_from_wsgi(wsgi(), base_url=base_url)


FORWARDED = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "hooks.example.com"}


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted() -> None:
    assert url_from_wsgi(wsgi(**FORWARDED)) == "http://h.example/qstash"
    assert url_from_wsgi(wsgi(**FORWARDED), trusted_proxies=1) == "https://hooks.example.com/qstash"


@pytest.mark.parametrize(
    ("headers", "hops", "url"),
    [
        # A client's own value comes first; the trusted proxy appends its own last.
        ({"HTTP_X_FORWARDED_PROTO": "http, https", "HTTP_X_FORWARDED_HOST": "evil.example, hooks.example.com"}, 1,
         "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "https, http", "HTTP_X_FORWARDED_HOST": "hooks.example.com, lb.internal"}, 2,
         "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, 2, "http://h.example/qstash"),  # fewer entries than proxies: ignored
        ({"HTTP_FORWARDED": 'for=1.2.3.4;proto=https;host="hooks.example.com"'}, 1, "https://hooks.example.com/qstash"),
        ({"HTTP_FORWARDED": "proto=http;host=evil.example, Proto=HTTPS;Host=hooks.example.com", **FORWARDED}, 1,
         "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "gopher", "HTTP_X_FORWARDED_HOST": "bad/host"}, 1, "http://h.example/qstash"),
        ({"HTTP_X_FORWARDED_HOST": "[::1]:8443"}, 1, "http://[::1]:8443/qstash"),
    ],
)  # fmt: skip
def test_trusted_proxies_count_from_this_server(headers: dict[str, str], hops: int, url: str) -> None:
    assert url_from_wsgi(wsgi(**headers), trusted_proxies=hops) == url


def test_asgi_reads_forwarded_headers_alike() -> None:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"hooks.example.com"),
    ]
    assert url_from_asgi(asgi(headers=headers), trusted_proxies=1) == "https://hooks.example.com/qstash"


@pytest.mark.parametrize("hops", [-1, 1.0, True, "1"])
def test_trusted_proxies_must_be_a_whole_number(hops: object) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        url_from_wsgi(wsgi(), trusted_proxies=hops)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "extra", [{"PATH_INFO": "/\u20ac"}, {"PATH_INFO": 5}, {"QUERY_STRING": b"a=1"}, {"RAW_URI": "/\u20ac"}]
)
def test_an_unreadable_wsgi_environ_is_an_event_error(extra: dict[str, Any]) -> None:
    environ = wsgi(**extra)
    if "RAW_URI" not in extra:
        environ.pop("RAW_URI", None)
    with pytest.raises(EventError):
        url_from_wsgi(environ)


@pytest.mark.parametrize(
    "extra",
    [
        {"headers": [(b"host",)]},
        {"headers": [("host", "h")]},
        {"query_string": "a=1"},
        {"raw_path": None, "path": "/\ud800"},
    ],
)
def test_an_unreadable_asgi_scope_is_an_event_error(extra: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        url_from_asgi(asgi(**extra))
