"""The README cannot rot: its commands run, its code compiles, its tables cover the code."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

import qstash_verify

README = (ROOT / "README.md").read_text(encoding="utf-8")
# Reference pages the README links: the same checks cover them (a block or table may live in either).
DOCS = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))}
TEXT = "\n".join([README, *DOCS.values()])
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", TEXT, flags=re.S)
# Run by CI on every landing rather than here (the suite would run itself, or build venvs).
RUN_BY_CI = {"test", "test-all", "test-integration", "zip", "demo", "lint"}
# serve: tests/test_dev_server.py; bench needs PyPI; help/clean/lint are trivial.
NOT_IN_CI = {"serve", "bench", "help", "clean"}


def sh_lines() -> list[str]:
    return [line.split("#")[0].strip() for lang, code in BLOCKS if lang == "sh" for line in code.splitlines()]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_every_make_command_is_a_target_and_run_by_ci_or_a_test() -> None:
    used = {line.split()[1] for line in sh_lines() if line.startswith("make ")}
    assert used, "the README shows make commands"
    assert used <= make_targets()
    for target in used:
        assert target in NOT_IN_CI or f"make {target}" in CI, target
    assert {"test", "demo"} <= used


def test_every_sh_command_is_covered() -> None:
    for line in filter(None, sh_lines()):
        assert line.startswith(("make ", "export ", "TOKEN=", "python3 qstash_verify.py")), line


def test_cli_block_runs_as_shown(tmp_path: Path) -> None:
    (block,) = [code for lang, code in BLOCKS if lang == "sh" and "qstash_verify.py verify" in code]
    env = {k: v for k, v in os.environ.items() if "QSTASH" not in k}
    result = subprocess.run(
        ["bash", "-e", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"verified": true' in result.stdout
    assert "rejected: url_mismatch" in result.stderr
    assert "exit status 1" in result.stdout


def test_python_blocks_compile() -> None:
    python = [code for lang, code in BLOCKS if lang == "python"]
    assert len(python) >= 3
    for code in python:
        compile(code, "README.md", "exec")


def test_handler_test_example_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = [code for lang, code in BLOCKS if lang == "python" and "def test_my_handler" in code]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["test_my_handler"](monkeypatch)


def test_every_reason_code_is_documented() -> None:
    for reason in qstash_verify.Reason:
        assert f"| `{reason.value}` |" in TEXT, reason


def test_every_environment_variable_is_documented() -> None:
    names = [v for k, v in vars(qstash_verify).items() if k.endswith("_VARIABLE")]
    assert len(names) >= 5
    for name in [*names, "PORT"]:
        assert f"`{name}`" in TEXT, name


def test_public_api_is_documented() -> None:
    for name in qstash_verify.__all__:
        assert f"`{name}" in TEXT, name


def test_the_framework_section_is_what_the_integration_tests_run() -> None:
    import test_integration

    nginx = [code for lang, code in BLOCKS if lang == "text" and "proxy_pass" in code]
    assert len(nginx) == 1
    for directive in ("client_max_body_size 11m;", "proxy_set_header Host $host;",
                      "proxy_set_header X-Forwarded-Proto $scheme;", "location /qstash {"):  # fmt: skip
        assert directive in nginx[0]
        assert directive in test_integration.NGINX_SITE
    assert "proxy_pass http://127.0.0.1:8000;" in nginx[0]  # no URI part, as the test's proxy_pass
    for name, command in test_integration.SERVERS.items():
        module = "examples." + re.search(r"examples[./](\w+)", " ".join(command))[1]  # type: ignore[index]
        assert module in README, name  # each example is shown with the command that runs it
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert "def handle(message: Message)" in source, module
        assert "wsgi_app(handle" in source or "asgi_app(handle" in source, module


@pytest.mark.integration
def test_the_nginx_site_passes_nginx_t_as_printed(tmp_path: Path) -> None:
    import shutil

    from test_integration import nginx_config, require

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    require("nginx (Debian's package)", nginx is not None)
    require("Debian's ssl-cert (the snakeoil certificate)", Path("/etc/ssl/certs/ssl-cert-snakeoil.pem").exists())
    (site,) = [code for lang, code in BLOCKS if lang == "text" and "proxy_pass" in code]
    (tmp_path / "nginx.conf").write_text(nginx_config(tmp_path, site))
    result = subprocess.run(
        [str(nginx), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def block(lang: str, marker: str) -> str:
    """The one block of ``lang`` holding ``marker``."""
    (code,) = [code for kind, code in BLOCKS if kind == lang and marker in code]
    return code


def lambda_function_with(handle: str) -> str:
    """lambda_function.py as a reader leaves it after replacing its ``handle`` with ``handle``."""
    source = (ROOT / "lambda_function.py").read_text(encoding="utf-8")
    start = source.index("def handle(message: Message) -> object:")
    end = source.index("# ----", start)
    return source[:start] + handle + "\n\n" + source[end:]


def function_url_event(url: str, body: bytes) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from conftest import token_for

    parts = urlsplit(url)
    return {
        "version": "2.0", "rawPath": parts.path, "rawQueryString": parts.query, "body": body.decode(),
        "isBase64Encoded": False, "requestContext": {"http": {"method": "POST"}},
        "headers": {"host": parts.netloc, "upstash-signature": token_for(url, body)},
    }  # fmt: skip


@pytest.mark.usefixtures("lambda_keys")
@pytest.mark.parametrize(
    ("body", "status"), [(b"not json", 489), (b'{"type": "unknown"}', 489), (b"[1]", 489), (b'{"id": 1}', 200)]
)
def test_the_readmes_handle_pasted_into_lambda_function_answers_bad_input_with_489(
    body: bytes, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    saved: list[Any] = []
    module: dict[str, Any] = {"__name__": "lambda_function", "save": lambda order, **kw: saved.append(order)}
    exec(compile(lambda_function_with(block("python", "save(order")), "lambda_function.py", "exec"), module)
    response = module["lambda_handler"](function_url_event("https://h.example/hook", body), None)
    assert response["statusCode"] == status, capsys.readouterr().out
    assert bool(saved) is (status == 200)


def test_the_callback_handle_runs_pasted_into_lambda_function(lambda_keys: None) -> None:
    import json

    from test_callbacks import CALLBACK, FAILURE_CALLBACK

    calls: list[tuple[str, tuple[Any, ...]]] = []
    module: dict[str, Any] = {"__name__": "lambda_function"}
    module["alert"] = lambda *args: calls.append(("alert", args))
    module["give_up"] = lambda *args: calls.append(("give_up", args))
    exec(compile(lambda_function_with(block("python", "message.callback()")), "lambda_function.py", "exec"), module)
    for envelope in (FAILURE_CALLBACK, {**CALLBACK, "status": 500, "retried": 3, "maxRetries": 3}):
        body = json.dumps(envelope).encode()
        assert module["lambda_handler"](function_url_event("https://h.example/cb", body), None)["statusCode"] == 200
    assert [name for name, _ in calls] == ["alert", "give_up"]
    assert calls[0][1][0] == FAILURE_CALLBACK["sourceMessasgeId"]


def test_the_migration_lines_run_as_printed() -> None:
    namespace: dict[str, Any] = {}
    exec(block("python", "# from qstash import Receiver"), namespace)
    assert namespace["Receiver"] is qstash_verify.Receiver
    assert namespace["SignatureError"] is qstash_verify.SignatureError


def test_the_own_framework_code_verifies_a_request_as_printed(lambda_keys: None) -> None:
    from conftest import token_for

    body = b'{"id": 1}'
    environ = {"wsgi.url_scheme": "https", "HTTP_HOST": "h.example", "PATH_INFO": "/hook", "QUERY_STRING": "a=1"}
    namespace: dict[str, Any] = {
        "environ": environ, "raw_body": body, "header": token_for("https://h.example/hook?a=1", body),
    }  # fmt: skip
    exec(block("python", "url_from_wsgi(environ)"), namespace)
    assert namespace["claims"].subject == "https://h.example/hook?a=1"


def test_the_redis_guard_builds_as_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    made: list[dict[str, Any]] = []
    fake = types.ModuleType("redis")
    fake.Redis = lambda **options: made.append(options) or object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "redis", fake)  # the real client needs a server to be useful
    namespace: dict[str, Any] = {"handle": lambda message: None}
    exec(block("python", "RedisStore(redis.Redis("), namespace)
    assert made == [{"socket_timeout": 2}]
    assert callable(namespace["app"])


def test_the_framework_lines_are_the_examples_lines() -> None:
    code = block("python", "DispatcherMiddleware")
    example, checked = None, 0
    for line in code.splitlines():
        named = re.match(r"# \w+ \((examples/\w+\.py)\)", line)
        if named:
            example = (ROOT / named[1]).read_text(encoding="utf-8")
        elif example is not None and line and not line.startswith("#"):
            statement = line.split("  #")[0]
            assert statement in example, line
            checked += 1
    assert checked >= 4


def test_the_gunicorn_command_is_the_one_the_integration_tests_run() -> None:
    import test_integration

    command = block("text", "gunicorn -b").split("gunicorn ", 1)[1].split()
    expected = test_integration.SERVERS["flask-gunicorn"]
    assert command == [part.replace("{port}", "8000") for part in expected[expected.index("gunicorn") + 1 :]]


def test_the_sam_block_names_the_templates_parameters() -> None:
    code = block("text", "sam deploy")
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert code.splitlines()[0] == "make zip"
    for parameter in re.findall(r"\b(QStash\w+SigningKey)\b", code):
        assert re.search(rf"^  {parameter}:\n    Type: String\n    NoEcho: true$", template, flags=re.M), parameter
    assert "sam deploy --parameter-overrides HandleOnce=true" in README
    assert re.search(r'^  HandleOnce:\n    Type: String\n    AllowedValues: \["false", "true"\]$', template, flags=re.M)


def test_the_example_log_record_has_the_documented_fields() -> None:
    import json

    line = block("text", "WARNING qstash_verify {")
    level, logger, record = line.strip().split(" ", 2)
    table = README.split("| log field |", 1)[1].split("\n\n", 1)[0]
    assert list(json.loads(record)) == re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert (level, logger) == ("WARNING", "qstash_verify")


def test_the_local_dev_server_block_uses_the_ports_it_says() -> None:
    code = block("text", "npx @upstash/qstash-cli dev")
    assert "make serve " in code
    assert "http://127.0.0.1:8080" in code  # make serve's default PORT
    assert re.search(r"^PORT \?= 8080$", (ROOT / "Makefile").read_text(), flags=re.M)
    assert "-port=8081" in code
    assert "http://127.0.0.1:8081/v2/publish/http://localhost:8080/" in code


# --- handled once, set up in the console ---


def dynamodb_calls() -> list[tuple[str, dict[str, Any]]]:
    """Every call DynamoDBStore makes, through a delivery handled, one released and one replayed."""
    from conftest import verified

    from qstash_verify import Deduplicator, DynamoDBStore, SignatureError

    calls: list[tuple[str, dict[str, Any]]] = []
    refuse = False

    class Client:  # records each call; with refuse, fails its condition as DynamoDB would
        def __getattr__(self, operation: str) -> Any:
            def call(**arguments: Any) -> None:
                calls.append((operation, arguments))
                if refuse:
                    error = Exception("ConditionalCheckFailedException")
                    error.response = {"Error": {"Code": "ConditionalCheckFailedException"}}  # type: ignore[attr-defined]
                    raise error

            return call

    guard = Deduplicator(DynamoDBStore("qstash-dedup", client=Client()))
    now = verified().issued_at
    lease = guard.begin(verified(jti="jwt_1"), "msg_1", now=now)
    assert lease is not None
    guard.succeeded(lease)
    lease = guard.begin(verified(jti="jwt_2"), "msg_2", now=now)
    assert lease is not None
    guard.failed(lease)
    refuse = True
    with pytest.raises(SignatureError, match="replayed"):
        guard.begin(verified(jti="jwt_1"), "msg_3", now=now)
    assert {operation for operation, _ in calls} == {"put_item", "delete_item"}
    return calls


def test_the_console_policy_grants_exactly_the_calls_the_code_makes_on_that_table_only() -> None:
    import json

    policy = json.loads(block("json", '"Statement"'))
    (statement,) = policy["Statement"]
    assert (policy["Version"], statement["Effect"]) == ("2012-10-17", "Allow")
    assert statement["Resource"] == "arn:aws:dynamodb:<region>:<account>:table/qstash-dedup"
    called = {"dynamodb:" + op.title().replace("_", "") for op, _ in dynamodb_calls()}
    assert set(statement["Action"]) == called == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert len(statement["Action"]) == len(called)
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    granted = template.split("DedupTablePolicy:", 1)[1].split("Action:", 1)[1].split("Resource:", 1)[0]
    assert set(re.findall(r"- (dynamodb:\w+)", granted)) == called
    assert "Resource: !GetAtt DedupTable.Arn" in template


def test_the_console_table_has_the_key_and_ttl_the_code_writes() -> None:
    section = README.split("### Set it up in the console", 1)[1].split("\n### ", 1)[0]
    assert "Table name `qstash-dedup`; partition key\n   `id`, type **String**; no sort key." in section
    assert "capacity mode **On-demand**" in section
    assert "TTL attribute\n   name `expires_at`" in section
    assert "add `QSTASH_DEDUP_TABLE` with the value\n   `qstash-dedup`" in section
    for operation, arguments in dynamodb_calls():
        assert arguments["TableName"] == "qstash-dedup"
        item = arguments.get("Item") or arguments["Key"]
        assert set(item["id"]) == {"S"}, operation  # the partition key: id, a string
        if operation == "put_item":
            assert set(item["expires_at"]) == {"N"}  # TTL reads a number of epoch seconds
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    for line in ("AttributeName: id\n          AttributeType: S", "KeyType: HASH", "BillingMode: PAY_PER_REQUEST",
                 "AttributeName: expires_at\n        Enabled: true"):  # fmt: skip
        assert line in template


# --- the README and its reference pages hang together ---


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    body = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", body, flags=re.M)}


def test_every_doc_is_linked_from_the_readme_and_every_link_resolves() -> None:
    assert DOCS, "docs/ holds the reference pages"
    for name in DOCS:
        assert f"](docs/{name})" in README, name
    pages = {"README.md": README, **{f"docs/{name}": text for name, text in DOCS.items()}}
    for page, text in pages.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("https://"):
                continue
            path, _, anchor = target.partition("#")
            resolved = (ROOT / page).parent / path if path else ROOT / page
            name = resolved.resolve().relative_to(ROOT.resolve()).as_posix()
            assert name in pages, (page, target)
            assert not anchor or anchor in anchors(pages[name]), (page, target)


# Words that mean something only inside this project's history.
INTERNAL = re.compile(r"\bseed\b|remodel|issue #\d|\(#\d+\)|before #\d", flags=re.I)


def test_no_words_that_only_make_sense_inside_this_project() -> None:
    bench = {name: (ROOT / "dev" / name).read_text() for name in ("bench.py", "bench_lambda.py")}  # its output
    for page, text in {"README.md": README, **DOCS, **bench}.items():
        assert not INTERNAL.findall(text), page


def test_the_first_screen_says_what_it_is_for_whom_and_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:24])
    assert "For Python developers who receive" in first_screen
    assert "make demo" in first_screen
    assert "make test" in first_screen
    order = [README.index(f"\n## {title}") for title in (
        "AWS Lambda", "Frameworks", "Handled once", "Callbacks", "Retries", "Configuration", "Troubleshooting",
        "Security notes", "API", "Speed")]  # fmt: skip
    assert order == sorted(order)
    lambda_section = README.split("\n## AWS Lambda", 1)[1].split("\n## ", 1)[0]
    ways = [lambda_section.index(w) for w in ("Upload the zip in the console", "Paste the two files", "AWS SAM")]
    assert ways == sorted(ways)


# Each fenced block of the README and docs/, and the test that runs or checks it as printed.
BLOCK_TESTS = {
    ("sh", "make demo"): "test_every_make_command_is_a_target_and_run_by_ci_or_a_test",
    ("sh", "make help"): "test_every_make_command_is_a_target_and_run_by_ci_or_a_test",
    ("sh", "qstash_verify.py verify"): "test_cli_block_runs_as_shown",
    ("python", "save(order"): "test_the_readmes_handle_pasted_into_lambda_function_answers_bad_input_with_489",
    ("python", "message.callback()"): "test_the_callback_handle_runs_pasted_into_lambda_function",
    ("python", "def test_my_handler"): "test_handler_test_example_passes",
    ("python", "DispatcherMiddleware"): "test_the_framework_lines_are_the_examples_lines",
    ("python", "url_from_wsgi(environ)"): "test_the_own_framework_code_verifies_a_request_as_printed",
    ("python", "# from qstash import Receiver"): "test_the_migration_lines_run_as_printed",
    ("python", "RedisStore(redis.Redis("): "test_the_redis_guard_builds_as_printed",
    ("json", '"Statement"'): "test_the_console_policy_grants_exactly_the_calls_the_code_makes_on_that_table_only",
    ("text", "sam deploy"): "test_the_sam_block_names_the_templates_parameters",
    ("text", "npx @upstash/qstash-cli dev"): "test_the_local_dev_server_block_uses_the_ports_it_says",
    ("text", "WARNING qstash_verify {"): "test_the_example_log_record_has_the_documented_fields",
    ("text", "gunicorn -b"): "test_the_gunicorn_command_is_the_one_the_integration_tests_run",
    ("text", "proxy_pass"): "test_the_nginx_site_passes_nginx_t_as_printed",
}


def test_every_block_is_run_or_checked_by_a_test() -> None:
    for lang, code in BLOCKS:
        owners = [test for (kind, marker), test in BLOCK_TESTS.items() if kind == lang and marker in code]
        assert len(owners) == 1, (lang, code[:80], owners)
        assert callable(globals()[owners[0]]), owners[0]
    assert len(BLOCKS) == len(BLOCK_TESTS)
