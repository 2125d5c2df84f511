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
X_FORWARDED = {"x-forwarded-proto": 1, "x-forwarded-host": 1}


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted() -> None:
    assert url_from_wsgi(wsgi(**FORWARDED)) == "http://h.example/qstash"
    assert url_from_wsgi(wsgi(**FORWARDED), trusted_proxies=X_FORWARDED) == "https://hooks.example.com/qstash"


@pytest.mark.parametrize(
    ("headers", "proxies", "url"),
    [
        # A client's own value comes first; the trusted proxy appends its own last.
        ({"HTTP_X_FORWARDED_PROTO": "http, https", "HTTP_X_FORWARDED_HOST": "evil.example, hooks.example.com"},
         X_FORWARDED, "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "https, http", "HTTP_X_FORWARDED_HOST": "hooks.example.com, lb.internal"},
         {"X-Forwarded-Proto": 2, "x-forwarded-host": 2}, "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, {"x-forwarded-proto": 2}, "http://h.example/qstash"),  # too few entries
        ({"HTTP_FORWARDED": 'for=1.2.3.4;proto=https;host="hooks.example.com"'}, {"forwarded": 1},
         "https://hooks.example.com/qstash"),
        ({"HTTP_FORWARDED": "proto=http;host=evil.example, Proto=HTTPS;Host=hooks.example.com"}, {"forwarded": 1},
         "https://hooks.example.com/qstash"),
        ({"HTTP_X_FORWARDED_PROTO": "gopher"}, X_FORWARDED, "http://h.example/qstash"),
        ({"HTTP_X_FORWARDED_HOST": "[::1]:8443"}, X_FORWARDED, "http://[::1]:8443/qstash"),
    ],
)  # fmt: skip
def test_trusted_proxies_count_from_this_server(headers: dict[str, str], proxies: dict[str, int], url: str) -> None:
    assert url_from_wsgi(wsgi(**headers), trusted_proxies=proxies) == url


@pytest.mark.parametrize(
    ("proxies", "sent"),
    [
        # The proxy writes only X-Forwarded-Proto (as the README's nginx site does): a client's
        # Forwarded or X-Forwarded-Host passes through it unchanged, and is never read.
        ({"x-forwarded-proto": 1}, {"HTTP_FORWARDED": "host=partner.example;proto=https"}),
        ({"x-forwarded-proto": 1}, {"HTTP_X_FORWARDED_HOST": "partner.example"}),
        ({"x-forwarded-proto": 1}, {"HTTP_FORWARDED": "host=partner.example", "HTTP_X_FORWARDED_HOST": "p.example"}),
        ({"forwarded": 1}, {"HTTP_X_FORWARDED_HOST": "partner.example"}),
        ({"x-forwarded-host": 1}, {"HTTP_FORWARDED": "host=partner.example"}),
    ],
)
def test_only_headers_the_proxies_write_choose_the_host(proxies: dict[str, int], sent: dict[str, str]) -> None:
    environ = wsgi(HTTP_X_FORWARDED_PROTO="https", **sent)
    scheme = "https" if "x-forwarded-proto" in proxies else "http"
    assert url_from_wsgi(environ, trusted_proxies=proxies) == f"{scheme}://h.example/qstash"


def test_asgi_reads_forwarded_headers_alike() -> None:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"hooks.example.com"),
    ]
    assert url_from_asgi(asgi(headers=headers), trusted_proxies=X_FORWARDED) == "https://hooks.example.com/qstash"


@pytest.mark.parametrize(
    "proxies", [1, True, [("x-forwarded-proto", 1)], {"x-real-ip": 1}, {"forwarded": 0}, {"forwarded": True},
                {"forwarded": 1.0}, {"forwarded": "1"}, {b"forwarded": 1}]
)  # fmt: skip
def test_trusted_proxies_names_known_headers_and_whole_counts(proxies: object) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        url_from_wsgi(wsgi(), trusted_proxies=proxies)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "host", ["x/admin", "h.example/a?b", "h.example#x", "user@h.example", "h.example:80:80", "h example"]
)
def test_a_host_that_is_not_host_and_port_is_an_event_error_never_a_path(host: str) -> None:
    with pytest.raises(EventError, match="host"):
        url_from_wsgi(wsgi(HTTP_HOST=host))
    with pytest.raises(EventError, match="host"):
        url_from_asgi(asgi(headers=[(b"host", host.encode())]))
    with pytest.raises(EventError, match="host"):  # nor from a trusted proxy
        url_from_wsgi(wsgi(HTTP_X_FORWARDED_HOST=host or ","), trusted_proxies={"x-forwarded-host": 1})


def test_with_a_base_url_nothing_from_host_reaches_the_url() -> None:
    base = "https://api.example.com"
    assert url_from_wsgi(wsgi(HTTP_HOST="x/admin"), base_url=base) == base + "/qstash"
    assert url_from_asgi(asgi(headers=[(b"host", b"x/admin")]), base_url=base) == base + "/qstash"


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("/qstash/%41dmin", "/qstash/%2541dmin"),  # from a request for /qstash/%2541dmin
        ("/qstash/100%", "/qstash/100%25"),
        ("/qstash/%2F", "/qstash/%252F"),
        ("/qstash/a b", "/qstash/a%20b"),
    ],
)
def test_a_decoded_path_is_data_not_escapes(path: str, encoded: str) -> None:
    assert url_from_wsgi(wsgi(PATH_INFO=path)) == "http://h.example" + encoded
    assert url_from_asgi(asgi(raw_path=None, path=path)) == "http://h.example" + encoded


def test_a_raw_target_keeps_its_escapes() -> None:
    assert url_from_wsgi(wsgi(RAW_URI="/qstash/%41dmin")) == "http://h.example/qstash/%41dmin"
    assert url_from_asgi(asgi(raw_path=b"/qstash/%41dmin")) == "http://h.example/qstash/%41dmin"


def test_asgi_without_raw_path_puts_an_older_servers_root_path_in_front() -> None:
    assert url_from_asgi(asgi(raw_path=None, root_path="/app", path="/qstash")) == "http://h.example/app/qstash"
    assert url_from_asgi(asgi(raw_path=None, root_path="/app", path="/app/qstash")) == "http://h.example/app/qstash"


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


def test_a_raw_target_that_needs_no_escape_is_taken_as_is_exactly_as_the_builder_would() -> None:
    import random

    from qstash_verify import _as_is, _target

    rng = random.Random(7)
    alphabet = "/a%2F?&=~ \t\x7f\u00e9\u2713#+"
    for _ in range(5000):
        path = "/" + "".join(rng.choices(alphabet, k=rng.randint(0, 6)))
        query = "".join(rng.choices(alphabet, k=rng.randint(0, 4)))
        built, plain = _target(path.encode(), query.encode(), raw=True), f"{path}?{query}" if query else path
        assert (built == plain) is (_as_is(path) and _as_is(query))
