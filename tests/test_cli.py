"""The command line: `python3 qstash_verify.py sign|verify`, exit 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import pty
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
    output = json.loads(result.stdout)
    assert (output["as_of"], output["as_of_source"]) == (issued, "issue")
    wrong_url = run("verify", "--signature", token, *keys("--url", URL + "/x", "--body", body.decode(), "--at-issue"))
    assert wrong_url.stderr.startswith(b"rejected: url_mismatch")
    forged = mint(claims(iat=issued, exp=issued + 300), key="forger")
    assert run("verify", "--signature", forged, *keys("--url", URL, "--at-issue")).returncode == 1


def test_at_issue_needs_an_iat() -> None:
    token = mint(claims(iat=...), key=CURRENT_KEY)
    result = run("verify", "--signature", token, *keys("--body", "", "--at-issue"))
    assert (result.returncode, result.stderr.startswith(b"error: --at-issue")) == (2, True)


# --- adoption: help, the body prompt, the moment checked, keys from the environment ----------------


def test_help_shows_examples_exit_codes_defaults_and_that_key_options_are_visible() -> None:
    top, signer, verifier = (run(*command, "--help") for command in ((), ("sign",), ("verify",)))
    for result in (top, signer, verifier):
        assert result.returncode == 0
        text = " ".join(result.stdout.decode().split())
        assert "exit status: 0 " in text
        assert " 1 " in text
        assert " 2 " in text
        assert "visible to other local users" in text
        assert "QSTASH_CURRENT_SIGNING_KEY" in text
    assert b"qstash_verify.py sign --url" in top.stdout
    assert b"qstash_verify.py verify --signature" in top.stdout
    assert b"default: 300" in signer.stdout
    assert b"default: 0" in verifier.stdout


@pytest.mark.parametrize("invoked", ["/usr/local/bin/qstash-verify", "qstash_verify.py"])
def test_help_names_the_command_as_invoked(invoked: str) -> None:
    code = f"import sys; sys.argv[0] = {invoked!r}; import qstash_verify; sys.exit(qstash_verify._main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {invoked.rsplit('/', 1)[-1]} ".encode())


def test_version_is_the_modules() -> None:
    import qstash_verify

    assert run("--version").stdout.decode().split() == ["qstash_verify.py", qstash_verify.__version__]


@pytest.mark.parametrize(
    "command", [("sign", "--url", URL, "--key", CURRENT_KEY), ("verify", "--signature", "a.b.c", *keys())]
)
def test_reading_the_body_from_a_terminal_says_so_on_stderr(command: tuple[str, ...]) -> None:
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, SCRIPT, *command], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        os.close(terminal)
        os.write(controller, b"hi\n\x04")  # a line, then Ctrl-D: end of input
        _stdout, stderr = process.communicate(timeout=60)
    os.close(controller)
    assert b"standard input" in stderr.splitlines()[0]
    assert b"Ctrl-D" in stderr.splitlines()[0]
    assert process.returncode == (0 if command[0] == "sign" else 1), stderr


@pytest.mark.parametrize(
    "command", [("sign", "--url", URL, "--key", CURRENT_KEY), ("verify", "--signature", "a.b.c", *keys())]
)
def test_reading_the_body_from_a_pipe_prompts_nothing(command: tuple[str, ...]) -> None:
    result = run(*command, stdin=b"hi")
    assert b"standard input" not in result.stderr


@pytest.mark.parametrize("issued", [0, 86_400, 1_764_374_400, 1_764_374_400.5])
def test_at_issue_names_the_moment_it_checked_at(issued: float) -> None:
    token = mint(claims(sub=URL, body=body_hash(b"x"), iat=issued, exp=issued + 300), key=CURRENT_KEY)
    result = run("verify", "--signature", token, *keys("--url", URL, "--body", "x", "--at-issue"))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert (output["as_of"], output["as_of_source"]) == (issued, "issue")
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
    assert output["as_of_utc"] == expected
    assert run("verify", "--signature", token, *keys("--url", URL, "--body", "x")).stderr.startswith(
        b"rejected: expired"
    )


def test_without_at_issue_as_of_is_the_moment_it_checked_at() -> None:
    before = time.time()
    result = run("verify", "--signature", signed(b"x"), *keys("--url", URL, "--body", "x"))
    after = time.time()
    output = json.loads(result.stdout)
    assert output["as_of_source"] == "now"
    assert before <= output["as_of"] <= after
    assert output["as_of_utc"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(output["as_of"]))


KEY_ENV = {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY, "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY}


@pytest.mark.parametrize("signer", [CURRENT_KEY, NEXT_KEY])
def test_without_key_options_both_commands_read_the_keys_from_the_environment(signer: str) -> None:
    env = KEY_ENV if signer == CURRENT_KEY else {"QSTASH_CURRENT_SIGNING_KEY": NEXT_KEY}
    token = run("sign", "--url", URL, "--body", "hi", **env).stdout.decode().strip()
    assert token.count(".") == 2
    verified = run("verify", "--signature", token, "--url", URL, "--body", "hi", **KEY_ENV)
    assert verified.returncode == 0, verified.stderr
    assert run("verify", "--signature", token, "--url", URL, "--body", "hi", "--current-key", signer).returncode == 0
    other = {**KEY_ENV, "QSTASH_CURRENT_SIGNING_KEY" if signer == CURRENT_KEY else "QSTASH_NEXT_SIGNING_KEY": "other"}
    assert run("verify", "--signature", token, "--url", URL, "--body", "hi", **other).returncode == 1


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (
            ("sign", "--url", URL, "--body", ""),
            {"QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY + "\n"},
            b"QSTASH_CURRENT_SIGNING_KEY",
        ),
        (
            ("verify", "--signature", "a.b.c", "--body", ""),
            {**KEY_ENV, "QSTASH_NEXT_SIGNING_KEY": f"'{NEXT_KEY}'"},
            b"QSTASH_NEXT_SIGNING_KEY",
        ),
        (("sign", "--url", URL, "--body", "", "--key", CURRENT_KEY + " "), {}, b"--key"),
        (("verify", "--signature", "a.b.c", "--body", "", "--current-key", " " + CURRENT_KEY), {}, b"--current-key"),
        (
            ("verify", "--signature", "a.b.c", "--body", "", *keys()[:2], "--next-key", f'"{NEXT_KEY}"'),
            {},
            b"--next-key",
        ),
    ],
)
def test_a_mangled_key_is_a_usage_error_naming_where_it_came_from(
    args: tuple[str, ...], env: dict[str, str], named: bytes
) -> None:
    result = run(*args, **env)
    assert result.returncode == 2
    assert result.stderr.startswith(b"error: " + named)
    assert CURRENT_KEY[4:].encode() not in result.stderr
    assert NEXT_KEY[4:].encode() not in result.stderr
