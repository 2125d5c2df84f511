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
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
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
        assert f"| `{reason.value}` |" in README, reason


def test_every_environment_variable_is_documented() -> None:
    names = [v for k, v in vars(qstash_verify).items() if k.endswith("_VARIABLE")]
    assert len(names) >= 5
    for name in [*names, "PORT"]:
        assert f"`{name}`" in README, name


def test_public_api_is_documented() -> None:
    for name in qstash_verify.__all__:
        assert f"`{name}" in README, name


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


@pytest.mark.parametrize(
    ("body", "status"), [(b"not json", 489), (b'{"type": "unknown"}', 489), (b"[1]", 489), (b'{"id": 1}', 200)]
)
def test_the_readmes_handle_answers_bad_input_with_489_not_a_retry(body: bytes, status: int) -> None:
    from conftest import CURRENT_KEY, token_for

    from qstash_verify import Message, NonRetryableError, Receiver, _run

    (block,) = [code for lang, code in BLOCKS if lang == "python" and "def handle(message: Message) -> Any:" in code
                and "save(order" in code]  # fmt: skip
    saved: list[Any] = []
    namespace: dict[str, Any] = {"Any": Any, "Message": Message, "NonRetryableError": NonRetryableError,
                                 "save": lambda order, **kw: saved.append(order)}  # fmt: skip
    exec(block, namespace)
    url = "https://h.example/hook"
    claims = Receiver(CURRENT_KEY).verify(signature=token_for(url, body), body=body, url=url)
    outcome = _run(namespace["handle"], Message(body, {}, url, claims))
    assert outcome.answer.status == status
    assert bool(saved) is (status == 200)
