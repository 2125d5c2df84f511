"""The command line: `python3 qstash_verify.py sign|verify`, exit 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CURRENT_KEY, NEXT_KEY, ROOT, body_hash, claims, mint

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


# --- issue #8, 9-12 ----------------------------------------------------------------------


def keys(*args: str) -> tuple[str, ...]:
    return ("--current-key", CURRENT_KEY, "--next-key", NEXT_KEY, *args)


@pytest.mark.parametrize("depth", [900, 990, 5_000])
def test_forged_deeply_nested_payload_is_a_rejection_not_a_crash(depth: int) -> None:
    payload = {"iss": "Upstash", "sub": URL, "deep": json.loads("[" * min(depth, 900) + "]" * min(depth, 900))}
    raw = json.dumps(payload).encode() if depth <= 900 else b'{"deep":' + b"[" * depth + b"]" * depth + b"}"
    token = mint(raw, key="forger")
    result = run("verify", "--signature", token, *keys("--url", URL, "--body", ""))
    assert result.returncode == 1
    assert result.stderr.startswith(b"rejected: bad_signature")
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("verify", "--signature", "a.b.c", *keys()), ("sign", "--url", URL, "--key", "k")])
def test_closed_stdin_without_a_body_is_a_usage_error(command: tuple[str, ...]) -> None:
    quoted = " ".join(f"'{part}'" for part in (sys.executable, SCRIPT, *command))
    result = subprocess.run(["bash", "-c", f"{quoted} <&-"], capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(b"error: no body")


def test_next_key_without_current_key_is_refused() -> None:
    token = mint(key=NEXT_KEY)
    result = run("verify", "--signature", token, "--next-key", NEXT_KEY, "--body", "")
    assert result.returncode == 2
    assert b"--next-key needs --current-key" in result.stderr


def test_verify_without_url_says_plainly_that_the_url_was_not_checked() -> None:
    body = b'{"id":1}'
    result = run("verify", "--signature", signed(body), *keys("--body", body.decode()))
    assert result.returncode == 0
    assert json.loads(result.stdout)["url_checked"] is False
    assert b"URL was NOT checked" in result.stderr
    with_url = run("verify", "--signature", signed(body), *keys("--url", URL, "--body", body.decode()))
    assert json.loads(with_url.stdout)["url_checked"] is True


def test_at_issue_checks_a_captured_token_as_of_its_iat() -> None:
    body, issued = b'{"id":1}', int(time.time()) - 86_400  # captured yesterday
    token = mint(claims(sub=URL, body=body_hash(body), iat=issued, exp=issued + 300), key=CURRENT_KEY)
    args = ("--signature", token, *keys("--url", URL, "--body", body.decode()))
    assert run("verify", *args).stderr.startswith(b"rejected: expired")
    result = run("verify", *args, "--at-issue")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["as_of"] == "issue"
    wrong_url = run("verify", "--signature", token, *keys("--url", URL + "/x", "--body", body.decode(), "--at-issue"))
    assert wrong_url.stderr.startswith(b"rejected: url_mismatch")
    forged = mint(claims(iat=issued, exp=issued + 300), key="forger")
    assert run("verify", "--signature", forged, *keys("--url", URL, "--at-issue")).returncode == 1


def test_at_issue_needs_an_iat() -> None:
    token = mint(claims(iat=...), key=CURRENT_KEY)
    result = run("verify", "--signature", token, *keys("--body", "", "--at-issue"))
    assert (result.returncode, result.stderr.startswith(b"error: --at-issue")) == (2, True)
