"""`make bench`, the Lambda path as Lambda pays it: cold start after the runtime client, warm calls, big events.

Four handlers side by side, each in a folder of source only (no __pycache__), as unpacked from a zip:
a minimal stdlib handler (the floor), ours (lambda_function.py + qstash_verify.py), the handler of
Upstash's "AWS Lambda (Python)" guide with PyJWT shipped as source, and one on the official SDK
(qstash.Receiver) with its dependencies shipped as source.  Instruction counts come from valgrind's
callgrind (the same on a busy machine as on an idle one: one run each); times are best of RUNS.
``--cold`` prints only the callgrind cold-start figures of ours and the floor.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qstash_verify import sign  # noqa: E402

RUNS = 9
WARM_CALLS = 200
# The cold start may cost at most this much more than the floor handler's, in instructions.
BUDGET_WHOLE, BUDGET_IMPORT = 1.80, 5.20
CURRENT, NEXT = "sig_4LpQw8ZtN2vRk6YxH9cJm3BdF7sG", "sig_8TnVb2KqW5xLr9PzC4mYh6JdE1uS"
HOST = "abc123.lambda-url.us-east-1.on.aws"
URL = f"https://{HOST}/api/qstash"
BODY = json.dumps({"event": "order.created", "id": 42})
# What the runtime client is imported as by Lambda's bootstrap, before the handler; 3.10+ only.
RUNTIME_CLIENT = "import awslambdaric.bootstrap"

FLOOR_HANDLER = """import base64, hashlib, hmac, json
def lambda_handler(event, context):
    return {"statusCode": 200}
"""
GUIDE_HANDLER = """import json, os, hmac, hashlib, base64, time
import jwt

def lambda_handler(event, context):
    current_signing_key = os.environ["QSTASH_CURRENT_SIGNING_KEY"]
    next_signing_key = os.environ["QSTASH_NEXT_SIGNING_KEY"]
    headers = event["headers"]
    signature = headers["upstash-signature"]
    url = "https://{}{}".format(event["requestContext"]["domainName"], event["rawPath"])
    body = event.get("body")
    try:
        verify(signature, current_signing_key, body, url)
    except Exception as e:
        print("Failed to verify signature with current signing key:", e)
        try:
            verify(signature, next_signing_key, body, url)
        except Exception as e2:
            return {"statusCode": 400, "body": json.dumps({"error": str(e2)})}
    return {"statusCode": 200, "body": json.dumps({"message": "ok"})}

def verify(jwt_token, signing_key, body, url):
    split = jwt_token.split(".")
    if len(split) != 3:
        raise Exception("Invalid JWT.")
    header, payload, signature = split
    message = header + "." + payload
    generated_signature = base64.urlsafe_b64encode(
        hmac.new(bytes(signing_key, "utf-8"), bytes(message, "utf-8"), digestmod=hashlib.sha256).digest()
    ).decode()
    if generated_signature != signature and signature + "=" != generated_signature:
        raise Exception("Invalid JWT signature.")
    decoded = jwt.decode(jwt_token, options={"verify_signature": False})
    sub, iss, exp, nbf, decoded_body = decoded["sub"], decoded["iss"], decoded["exp"], decoded["nbf"], decoded["body"]
    if iss != "Upstash":
        raise Exception("Invalid issuer: {}".format(iss))
    if sub.rstrip("/") != url.rstrip("/"):
        raise Exception("Invalid subject: {}".format(sub))
    now = time.time()
    if now > exp:
        raise Exception("Token has expired.")
    if now < nbf:
        raise Exception("Token is not yet valid.")
    if body is not None:
        while decoded_body[-1] == "=":
            decoded_body = decoded_body[:-1]
        generated_hash = base64.urlsafe_b64encode(hashlib.sha256(bytes(body, "utf-8")).digest()).decode()
        if generated_hash not in (decoded_body, decoded_body + "="):
            raise Exception("Body hash doesn't match.")
"""
SDK_HANDLER = """import json, os
from qstash import Receiver

receiver = Receiver(os.environ["QSTASH_CURRENT_SIGNING_KEY"], os.environ["QSTASH_NEXT_SIGNING_KEY"])

def lambda_handler(event, context):
    url = "https://{}{}".format(event["requestContext"]["domainName"], event["rawPath"])
    try:
        receiver.verify(signature=event["headers"]["upstash-signature"], body=event.get("body") or "", url=url)
    except Exception as e:
        return {"statusCode": 401, "body": json.dumps({"error": str(e)})}
    return {"statusCode": 200, "body": json.dumps({"message": "ok"})}
"""
# What a zip of the SDK handler holds besides it (those that pip installed here).
SDK_PACKAGES = ("qstash", "jwt", "httpx", "httpcore", "anyio", "h11", "certifi", "idna", "sniffio", "exceptiongroup")
SDK_MODULES = ("typing_extensions",)

# One delivery after the runtime client and the import; with calls > 0, that many more (warm) after it.
HANDLER_SNIPPET = """{client}
import os, sys
sys.path.insert(0, {folder!r})
{imported}
sys.stdout = open(os.devnull, "w")  # our log line is written, as to CloudWatch, but not shown
for _ in range({calls}):
    assert lambda_function.lambda_handler({event!r}, None)["statusCode"] == 200
"""
BIG_EVENT_SNIPPET = """
import base64, hashlib, os, sys, time, tracemalloc
sys.path.insert(0, {folder!r})
import qstash_verify
body = os.urandom(6 * 1024 * 1024)
event = {{"version": "2.0", "rawPath": "/h", "rawQueryString": "", "isBase64Encoded": True,
          "body": base64.b64encode(body).decode(), "headers": {{"host": "h"}}, "requestContext": {{}}}}
def baseline():
    hashlib.sha256(base64.b64decode(event["body"])).digest()
def ours():
    hashlib.sha256(qstash_verify.parse_lambda_event(event).body).digest()
best = {{}}
for _ in range(7):
    for name, function in (("baseline", baseline), ("ours", ours)):
        started = time.perf_counter(); function(); elapsed = time.perf_counter() - started
        best[name] = min(best.get(name, elapsed), elapsed)
tracemalloc.start()
qstash_verify.parse_lambda_event(event)
peak = tracemalloc.get_traced_memory()[1]
print(best["ours"] / best["baseline"], peak / len(body))
"""
IMPORT_TIME_SNIPPET = """{client}
import sys, time
sys.path.insert(0, {folder!r})
started = time.perf_counter()
import lambda_function
print((time.perf_counter() - started) * 1000)
"""


def signed_event() -> dict[str, object]:
    """One QStash delivery through a Function URL, valid for an hour: every handler answers it 200."""
    token = sign(CURRENT, url=URL, body=BODY, ttl=3600)
    headers = {"host": HOST, "x-forwarded-proto": "https", "upstash-signature": token}
    headers.update({"content-type": "application/json", "upstash-message-id": "msg_1", "upstash-retried": "0"})
    return {
        "version": "2.0",
        "rawPath": "/api/qstash",
        "rawQueryString": "",
        "body": BODY,
        "isBase64Encoded": False,
        "requestContext": {"domainName": HOST, "http": {"method": "POST"}},
        "headers": headers,
    }


def has_runtime_client() -> bool:
    return importlib.util.find_spec("awslambdaric") is not None


def _environment() -> dict[str, str]:
    """The keys the handlers read, and hash randomisation fixed, so that counts repeat exactly."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONHASHSEED": "0",
        "QSTASH_CURRENT_SIGNING_KEY": CURRENT,
        "QSTASH_NEXT_SIGNING_KEY": NEXT,
    }


def run(snippet: str, folder: Path, tool: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``snippet`` in a fresh interpreter that writes no bytecode, under ``tool`` if any."""
    command = [*tool, sys.executable, "-s", "-B", "-c", snippet]
    return subprocess.run(command, capture_output=True, text=True, check=True, cwd=folder, env=_environment())


def instructions(snippet: str, folder: Path) -> int:
    """Instructions executed by a fresh interpreter running ``snippet``, counted by callgrind."""
    result = run(snippet, folder, ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"))
    return int(result.stderr.rsplit("Collected : ", 1)[1].split()[0])


def _copy_source(name: str, folder: Path) -> bool:
    """Copy the installed module or package ``name`` into ``folder`` as source; False if not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return False
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        shutil.copytree(origin.parent, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(origin, folder / origin.name)
    return True


def handler_folders(workspace: Path) -> dict[str, Path]:
    """One folder per handler, holding only source, as unpacked from its zip; without PyJWT and the
    SDK installed (outside .venv-bench), ours and the floor alone."""
    folders = {name: workspace / name for name in ("floor", "ours", "guide", "sdk")}
    for folder in folders.values():
        folder.mkdir()
    (folders["floor"] / "lambda_function.py").write_text(FLOOR_HANDLER)
    for name in ("lambda_function.py", "qstash_verify.py"):
        shutil.copy(ROOT / name, folders["ours"] / name)
    (folders["guide"] / "lambda_function.py").write_text(GUIDE_HANDLER)
    (folders["sdk"] / "lambda_function.py").write_text(SDK_HANDLER)
    if not _copy_source("jwt", folders["guide"]) or importlib.util.find_spec("qstash") is None:
        return {name: folders[name] for name in ("floor", "ours")}
    for name in (*SDK_PACKAGES, *SDK_MODULES):
        _copy_source(name, folders["sdk"])
    return folders


def _parallel(jobs: dict[str, tuple[str, Path]]) -> dict[str, int]:
    """Instruction counts of many snippets, as many at once as there are CPUs."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        futures = {key: pool.submit(instructions, snippet, folder) for key, (snippet, folder) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def _snippet(folder: Path, client: str, imported: bool = True, calls: int = 1) -> tuple[str, Path]:
    module = "import lambda_function" if imported else ""
    event = signed_event()
    return HANDLER_SNIPPET.format(client=client, folder=str(folder), imported=module, event=event, calls=calls), folder


def counts(folders: dict[str, Path], client: str, warm: bool) -> dict[str, int]:
    """Instructions of fresh interpreters: ``start`` runs all but the import and the answer; per handler,
    ``name import`` adds the import, ``name whole`` the first answer too; ``warm``, WARM_CALLS more of ours."""
    names = list(reversed(folders))  # the longest first, so that the last to finish is a short one
    jobs = {"ours warm": _snippet(folders["ours"], client, calls=1 + WARM_CALLS)} if warm else {}
    jobs.update({f"{name} whole": _snippet(folders[name], client) for name in names})
    jobs.update({f"{name} import": _snippet(folders[name], client, calls=0) for name in ("ours", "floor")})
    jobs["start"] = _snippet(folders["floor"], client, imported=False, calls=0)
    return _parallel(jobs)


def _budget(ratio: float, budget: float, client: str) -> str:
    verdict = "over" if ratio > budget else "within"
    measured = "" if client else "; set with the runtime client, so not comparable here"
    return f"{ratio:.2f}x (budget {budget:.2f}x: {verdict}{measured})"


def instruction_rows(folders: dict[str, Path], client: str, warm: bool) -> list[tuple[str, str]]:
    counted = counts(folders, client, warm)
    whole = {name: counted[f"{name} whole"] for name in folders}
    imported = {name: counted[f"{name} import"] - counted["start"] for name in ("ours", "floor")}
    rows = [
        ("whole cold start, instructions: ours / floor", _budget(whole["ours"] / whole["floor"], BUDGET_WHOLE, client)),
        (
            "import alone, instructions: ours / floor",
            _budget(imported["ours"] / imported["floor"], BUDGET_IMPORT, client),
        ),
        (
            "whole cold start, millions of instructions: " + " / ".join(folders),
            " / ".join(f"{whole[n] / 1e6:.1f}" for n in folders),
        ),
    ]
    for name, label in (("guide", "the guide's handler (PyJWT)"), ("sdk", "the official SDK")):
        if name in folders:
            rows.append((f"whole cold start, instructions: {label} / ours", f"{whole[name] / whole['ours']:.2f}x"))
    if warm:
        per_call = (counted["ours warm"] - whole["ours"]) / WARM_CALLS
        rows.append(("warm lambda_handler, instructions per call: ours", f"{per_call:,.0f}"))
    return rows


def timed_rows(folders: dict[str, Path], client: str) -> list[tuple[str, str]]:
    """Wall-clock figures: noisy, so best of RUNS, the candidates interleaved."""
    best = {name: float("inf") for name in folders}
    for _ in range(RUNS):
        for name, folder in folders.items():
            snippet = IMPORT_TIME_SNIPPET.format(client=client, folder=str(folder))
            best[name] = min(best[name], float(run(snippet, folder).stdout))
    time_ratio, memory_ratio = map(
        float, run(BIG_EVENT_SNIPPET.format(folder=str(folders["ours"])), ROOT).stdout.split()
    )
    return [
        ("cold `import lambda_function`, ms: " + " / ".join(folders), " / ".join(f"{best[n]:.1f}" for n in folders)),
        ("6 MB base64 event: time / (b64decode + sha256)", f"{time_ratio:.2f}x"),
        ("6 MB base64 event: peak extra memory / body", f"{memory_ratio:.2f}x"),
    ]


def main() -> int:
    cold_only = "--cold" in sys.argv[1:]
    client = RUNTIME_CLIENT if has_runtime_client() else ""
    where = "after AWS's runtime client" if client else "without the runtime client (awslambdaric needs 3.10+)"
    print(f"Python {sys.version.split()[0]}: the Lambda path, {where}, handlers compiled from source")
    print("  floor: a minimal stdlib handler; guide: Upstash's guide with PyJWT; sdk: the official SDK")
    with tempfile.TemporaryDirectory() as workspace:
        folders = handler_folders(Path(workspace))
        if cold_only:  # ours against the floor: the alternatives take most of the time
            folders = {name: folders[name] for name in ("floor", "ours")}
        counted = shutil.which("valgrind") is not None
        rows = instruction_rows(folders, client, not cold_only) if counted else [("instructions", "n/a (no valgrind)")]
        if not cold_only:
            rows += timed_rows(folders, client)
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
