"""`make bench`: this verifier vs the official qstash SDK vs the guide's handler (PyJWT), side by side in one run.

Runs in .venv-bench (which has the official SDK and PyJWT); without them it
measures this project alone.  Ratios within one run are what to compare: the
machines are shared and noisy.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dev"))

import build_zip  # noqa: E402
from bench_lambda import GUIDE_HANDLER  # noqa: E402

from qstash_verify import Receiver, sign  # noqa: E402

# Real QStash keys are 32 characters; PyJWT warns (slowly) about shorter ones.
CURRENT, NEXT = "sig_4LpQw8ZtN2vRk6YxH9cJm3BdF7sG", "sig_8TnVb2KqW5xLr9PzC4mYh6JdE1uS"
URL = "https://xyz789.lambda-url.us-east-1.on.aws/api/qstash"
BODY = b'{"event":"order.created","id":42,"items":[1,2,3]}'
BIG_BODY = os.urandom(6 * 1024 * 1024)
REPEATS = 7

try:
    import jwt
    from qstash import Receiver as OfficialReceiver
except ImportError:  # measured alone
    jwt = None
    OfficialReceiver = None


# Upstash's "AWS Lambda (Python)" guide: its verify(), as bench_lambda ships it in a handler.
_GUIDE: dict[str, Any] = {}
if jwt is not None:
    exec(GUIDE_HANDLER, _GUIDE)


def guide_verify(token: str, body: str) -> None:
    """The guide's two tries: the current key, then the next."""
    try:
        _GUIDE["verify"](token, CURRENT, body, URL)
    except Exception:  # noqa: BLE001 -- as the guide does
        _GUIDE["verify"](token, NEXT, body, URL)


def per_call_us(functions: dict[str, Callable[[], Any]], number: int) -> dict[str, float]:
    """Best-of-REPEATS microseconds per call, the candidates interleaved so noise hits all alike."""
    best = {name: float("inf") for name in functions}
    for _ in range(REPEATS):
        for name, function in functions.items():
            seconds = timeit.Timer(function).timeit(number)
            best[name] = min(best[name], seconds / number * 1e6)
    return best


def import_us(module: str, folder: str, bytecode: bool = True) -> float:
    """Best cumulative -X importtime of ``module`` in a fresh interpreter started in ``folder`` (µs)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    best = float("inf")
    for _ in range(REPEATS + 1):  # the first run writes the bytecode cache, if allowed
        command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, check=True)
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
            if match and match.group(2) == module:
                best = min(best, float(match.group(1)))
    return best


def check_interoperability(token: str) -> None:
    """Our tokens verify with the official SDK; PyJWT's tokens verify with us."""
    OfficialReceiver(CURRENT, NEXT).verify(signature=token, body=BODY.decode(), url=URL)
    now = int(time.time())
    claims = {
        "iss": "Upstash",
        "sub": URL,
        "exp": now + 300,
        "nbf": 0,
        "iat": now,
        "jti": "jwt_x",
        "body": base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode(),
    }
    Receiver(CURRENT).verify(signature=jwt.encode(claims, CURRENT, algorithm="HS256"), body=BODY, url=URL)


def verification_rows(ours: Receiver) -> list[tuple[str, str, str, str]]:
    current, following = sign(CURRENT, url=URL, body=BODY), sign(NEXT, url=URL, body=BODY)
    text = BODY.decode()
    candidates: dict[str, Callable[[], Any]] = {
        "ours": lambda: ours.verify(signature=current, body=BODY, url=URL),
        "ours next": lambda: ours.verify(signature=following, body=BODY, url=URL),
    }
    if OfficialReceiver is not None:
        check_interoperability(current)
        official = OfficialReceiver(CURRENT, NEXT)
        candidates["sdk"] = lambda: official.verify(signature=current, body=text, url=URL)
        candidates["sdk next"] = lambda: official.verify(signature=following, body=text, url=URL)
        candidates["guide"] = lambda: guide_verify(current, text)
        candidates["guide next"] = lambda: guide_verify(following, text)
    us = per_call_us(candidates, 2000)
    na = "n/a (no SDK here)"
    sdk = lambda key: f"{us[key]:.1f}" if key in us else na  # noqa: E731
    return [
        ("verify, µs per call", f"{us['ours']:.1f}", sdk("sdk"), sdk("guide")),
        ("next-key token, µs per call", f"{us['ours next']:.1f}", sdk("sdk next"), sdk("guide next")),
        (
            "next-key / current-key",
            f"{us['ours next'] / us['ours']:.2f}x",
            f"{us['sdk next'] / us['sdk']:.2f}x" if "sdk" in us else na,
            f"{us['guide next'] / us['guide']:.2f}x" if "guide" in us else na,
        ),
        (
            "slower than ours, per verification",
            "1.00x",
            f"{us['sdk'] / us['ours']:.1f}x" if "sdk" in us else na,
            f"{us['guide'] / us['ours']:.1f}x" if "guide" in us else na,
        ),
    ]


def big_body_row(ours: Receiver) -> tuple[str, str, str, str]:
    token = sign(CURRENT, url=URL, body=BIG_BODY)
    us = per_call_us(
        {
            "hashlib": lambda: hashlib.sha256(BIG_BODY).digest(),
            "ours": lambda: ours.verify(signature=token, body=BIG_BODY, url=URL),
        },
        5,
    )
    return ("6 MB body / sha256 alone", f"{us['ours'] / us['hashlib']:.3f}x ({us['ours'] / 1000:.1f} ms)", "", "")


def import_rows() -> list[tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory() as cached, tempfile.TemporaryDirectory() as source:
        for folder in (cached, source):
            (Path(folder) / "qstash_verify.py").write_bytes((ROOT / "qstash_verify.py").read_bytes())
        ours = import_us("qstash_verify", cached)
        # Lambda cannot write __pycache__ into /var/task: every cold start compiles the source.
        ours_source = import_us("qstash_verify", source, bytecode=False)
        sdk = f"{import_us('qstash', source) / 1000:.1f}" if OfficialReceiver is not None else "n/a"
        guide = f"{import_us('jwt', source) / 1000:.1f}" if jwt is not None else "n/a"
    return [
        ("cold import, ms (bytecode cached)", f"{ours / 1000:.1f}", sdk, guide),
        ("cold import, ms (compiled from source)", f"{ours_source / 1000:.1f}", "", ""),
    ]


def zip_row() -> tuple[str, str, str, str]:
    with tempfile.TemporaryDirectory() as folder:
        size = len(build_zip.build(Path(folder) / "lambda.zip"))
    return ("lambda.zip, bytes", str(size), "(PyJWT + SDK deps)", "(PyJWT in the zip)")


def main() -> int:
    ours = Receiver(CURRENT, NEXT)
    rows = [*verification_rows(ours), big_body_row(ours), *import_rows(), zip_row()]
    header = ("", "qstash_verify", "the official SDK", "the guide's handler (PyJWT)")
    print(f"Python {sys.version.split()[0]} on {os.uname().machine}, best of {REPEATS}")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
