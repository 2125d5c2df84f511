"""Serve one signed request from an unpacked lambda.zip, as Lambda would: `python3 -I -S dev/zip_smoke.py DIR`.

Imports only from DIR and the standard library (-I -S: no site packages, no repository on the path).
"""

from __future__ import annotations

import json
import sys
from typing import Any

sys.path.insert(0, sys.argv[1])

import lambda_function
import qstash_verify

KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_smoke_current", "QSTASH_NEXT_SIGNING_KEY": "sig_smoke_next"}
HOST = "abc123.lambda-url.eu-central-1.on.aws"
BODY = '{"hello":"lambda"}'


def event(signature: str, body: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/hook",
        "rawQueryString": "",
        "headers": {"host": HOST, "upstash-signature": signature, "x-forwarded-proto": "https"},
        "requestContext": {"domainName": HOST, "http": {"method": "POST", "path": "/hook"}},
        "body": body,
        "isBase64Encoded": False,
    }


def main() -> int:
    import os

    os.environ.update(KEYS)
    assert qstash_verify.__file__.startswith(sys.argv[1]), qstash_verify.__file__
    token = qstash_verify.sign(KEYS["QSTASH_NEXT_SIGNING_KEY"], url=f"https://{HOST}/hook", body=BODY)
    good = lambda_function.lambda_handler(event(token, BODY), None)
    bad = lambda_function.lambda_handler(event(token, BODY + " "), None)
    ok = good["statusCode"] == 200 and (bad["statusCode"], json.loads(bad["body"])) == (401, {"error": "body_mismatch"})
    print(f"Python {sys.version.split()[0]}: signed -> {good['statusCode']}, tampered -> {bad['statusCode']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
