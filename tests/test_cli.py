"""The command line: `python3 qstash_verify.py sign|verify`, exit 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import CURRENT_KEY, NEXT_KEY, ROOT

SCRIPT = str(ROOT / "qstash_verify.py")
URL = "https://hooks.example.com/api/qstash"


def run(*args: str, stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if "QSTASH" not in k}
    return subprocess.run(
        [sys.executable, SCRIPT, *args], input=stdin, capture_output=True, env={**clean, **env}, timeout=60, check=False
    )


def signed(body: bytes, key: str = NEXT_KEY) -> str:
    result = run("sign", "--url", URL, "--key", key, stdin=body)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().strip()


def test_sign_then_verify_with_keys_from_the_environment(tmp_path: Path) -> None:
    body = bytes(range(256))
    (tmp_path / "body.bin").write_bytes(body)
    env = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY}
    result = run("verify", "--signature", signed(body), "--url", URL, "--body-file", str(tmp_path / "body.bin"), **env)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["verified"] is True
    assert output["claims"]["subject"] == URL


def test_sign_reads_the_key_from_the_environment() -> None:
    token = run("sign", "--url", URL, "--body", "hi", QSTASH_CURRENT_SIGNING_KEY=CURRENT_KEY).stdout.decode().strip()
    result = run("verify", "--signature", token, "--body", "hi", "--current-key", CURRENT_KEY)
    assert result.returncode == 0, result.stderr


def test_rejection_says_which_check_failed() -> None:
    token = signed(b"body")
    result = run(
        "verify",
        "--signature",
        token,
        "--url",
        URL + "/other",
        "--current-key",
        CURRENT_KEY,
        "--next-key",
        NEXT_KEY,
        stdin=b"body",
    )
    assert result.returncode == 1
    assert b"url_mismatch" in result.stderr
    assert URL.encode() in result.stderr
    tampered = run("verify", "--signature", token, "--current-key", CURRENT_KEY, "--next-key", NEXT_KEY, stdin=b"x")
    assert tampered.returncode == 1
    assert b"body_mismatch" in tampered.stderr
    wrong_key = run("verify", "--signature", token, "--current-key", CURRENT_KEY, stdin=b"body")
    assert wrong_key.returncode == 1
    assert b"bad_signature" in wrong_key.stderr
    for output in (result, tampered, wrong_key):
        assert CURRENT_KEY.encode() not in output.stderr + output.stdout
        assert token.encode() not in output.stderr + output.stdout


def test_missing_keys_exit_2_naming_the_variable() -> None:
    result = run("verify", "--signature", "a.b.c", "--body", "")
    assert result.returncode == 2
    assert b"QSTASH_CURRENT_SIGNING_KEY" in result.stderr
    assert run("sign", "--url", URL, "--body", "").returncode == 2


def test_usage_errors_exit_2() -> None:
    assert run().returncode == 2
    assert run("verify", "--body", "x").returncode == 2
    assert run("sign", "--url", URL, "--key", "k", "--body-file", "/nonexistent/file").returncode == 2
