"""`make bench`, the Lambda path as Lambda pays it: cold start after the runtime client, warm calls, big events.

Each figure is measured in fresh interpreters, the candidates interleaved, the best run kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the Lambda layer was remodelled (issue #10): the baseline for warm calls.
BASELINE = "3d539b7"
RUNS = 9
# Imported first, as Lambda's bootstrap does before it imports the handler.
RUNTIME_CLIENT = "import awslambdaric.bootstrap"
FLOOR_HANDLER = "import base64, hashlib, hmac, json\ndef lambda_handler(event, context):\n    return {}\n"
SEED_HANDLER = "import base64, hashlib, hmac, json, time\nimport jwt\n" + FLOOR_HANDLER.split("\n", 1)[1]
IMPORT_SNIPPET = """
import sys, time
sys.path.insert(0, {folder!r})
{client}
started = time.perf_counter()
import lambda_function
print((time.perf_counter() - started) * 1000)
"""
WARM_SNIPPET = """
import io, json, os, sys, time
sys.path.insert(0, {folder!r})
os.environ.update(QSTASH_CURRENT_SIGNING_KEY="sig_bench_current", QSTASH_NEXT_SIGNING_KEY="sig_bench_next")
import lambda_function, qstash_verify
host = "abc123.lambda-url.us-east-1.on.aws"
body = json.dumps({{"event": "order.created", "id": 42}})
token = qstash_verify.sign("sig_bench_current", url=f"https://{{host}}/api/qstash?tenant=7", body=body, ttl=3600)
event = {{"version": "2.0", "rawPath": "/api/qstash", "rawQueryString": "tenant=7", "body": body,
          "isBase64Encoded": False, "requestContext": {{"domainName": host, "http": {{"method": "POST"}}}},
          "headers": {{"host": host, "x-forwarded-proto": "https", "upstash-signature": token,
                      "content-type": "application/json", "upstash-message-id": "msg_1", "upstash-retried": "0",
                      "user-agent": "Upstash-QStash", "x-amzn-trace-id": "Root=1-abc", "x-forwarded-for": "1.2.3.4"}}}}
sys.stdout = open(os.devnull, "w")  # the log line is written, as to CloudWatch, but not shown
assert lambda_function.lambda_handler(event, None)["statusCode"] == 200
started = time.perf_counter()
for _ in range({calls}):
    lambda_function.lambda_handler(event, None)
sys.__stdout__.write(str({calls} / (time.perf_counter() - started)))
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
for _ in range(5):
    for name, function in (("baseline", baseline), ("ours", ours)):
        started = time.perf_counter(); function(); elapsed = time.perf_counter() - started
        best[name] = min(best.get(name, elapsed), elapsed)
tracemalloc.start()
qstash_verify.parse_lambda_event(event)
peak = tracemalloc.get_traced_memory()[1]
print(best["ours"] / best["baseline"], peak / len(body))
"""


def run(snippet: str, folder: Path, python: str = sys.executable) -> str:
    command = [python, "-I", "-B", "-c", snippet]
    return subprocess.run(command, capture_output=True, text=True, check=True, cwd=folder).stdout.strip()


def handler_folders(workspace: Path) -> dict[str, Path]:
    """One folder per candidate handler, holding only source (no __pycache__), as unpacked from a zip."""
    folders = {name: workspace / name for name in ("floor", "ours", "baseline", "seed")}
    for folder in folders.values():
        folder.mkdir()
    (folders["floor"] / "lambda_function.py").write_text(FLOOR_HANDLER)
    for name in ("lambda_function.py", "qstash_verify.py"):
        shutil.copy(ROOT / name, folders["ours"] / name)
        baseline = subprocess.run(["git", "show", f"{BASELINE}:{name}"], cwd=ROOT, capture_output=True, check=True)
        (folders["baseline"] / name).write_bytes(baseline.stdout)
    (folders["seed"] / "lambda_function.py").write_text(SEED_HANDLER)
    import jwt  # the seed's Makefile ships PyJWT's source in the zip

    shutil.copytree(Path(jwt.__file__).parent, folders["seed"] / "jwt", ignore=shutil.ignore_patterns("__pycache__"))
    return folders


def cold_starts(folders: dict[str, Path]) -> dict[str, float]:
    best = {name: float("inf") for name in folders}
    for _ in range(RUNS):
        for name, folder in folders.items():
            snippet = IMPORT_SNIPPET.format(folder=str(folder), client=RUNTIME_CLIENT)
            best[name] = min(best[name], float(run(snippet, folder)))
    return best


def warm_calls(folders: dict[str, Path]) -> dict[str, float]:
    best = {"ours": 0.0, "baseline": 0.0}
    for _ in range(5):
        for name, so_far in best.items():
            folder = folders[name]
            best[name] = max(so_far, float(run(WARM_SNIPPET.format(folder=str(folder), calls=5000), folder)))
    return best


def instructions(snippet: str, folder: Path) -> int:
    """Instructions executed, counted by valgrind's callgrind: the same on a busy machine as on an idle one."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-I",
        "-B",
        "-c",
        snippet,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=folder)
    return int(result.stderr.rsplit("Collected : ", 1)[1].split()[0])


def cold_instructions(folders: dict[str, Path]) -> dict[str, float]:
    """Instructions to import each handler from source after the runtime client (the client's own cancel out)."""
    client_only = instructions(RUNTIME_CLIENT, folders["floor"])
    snippet = "import sys\nsys.path.insert(0, {folder!r})\n{client}\nimport lambda_function"
    return {
        name: instructions(snippet.format(folder=str(folder), client=RUNTIME_CLIENT), folder) - client_only
        for name, folder in folders.items()
    }


def _cold_ratios(counted: dict[str, float]) -> str:
    ours, floor = counted["ours"], counted["floor"]
    return f"{ours / floor:.2f}x, {counted['baseline'] / floor:.2f}x, {counted['seed'] / ours:.2f}x"


def instructions_per_call(folders: dict[str, Path]) -> dict[str, float]:
    """Instructions per warm lambda_handler call: 1,000 calls less none, so start-up cancels out."""
    per_call = {}
    for name in ("ours", "baseline"):
        folder = folders[name]
        counts = [instructions(WARM_SNIPPET.format(folder=str(folder), calls=calls), folder) for calls in (0, 1000)]
        per_call[name] = (counts[1] - counts[0]) / 1000
    return per_call


def rows() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as workspace:
        folders = handler_folders(Path(workspace))
        cold = cold_starts(folders)
        warm = warm_calls(folders)
        counted = instructions_per_call(folders) if shutil.which("valgrind") else None
        cold_counted = cold_instructions(folders) if shutil.which("valgrind") else None
        time_ratio, memory_ratio = map(float, run(BIG_EVENT_SNIPPET.format(folder=str(folders["ours"])), ROOT).split())
    ours, floor, seed = cold["ours"], cold["floor"], cold["seed"]
    return [
        ("cold `import lambda_function`, ms: ours / floor / seed+PyJWT", f"{ours:.1f} / {floor:.1f} / {seed:.1f}"),
        ("cold import: ours / floor handler", f"{ours / floor:.2f}x"),
        ("cold import: seed handler with PyJWT / ours", f"{seed / ours:.2f}x"),
        (
            "cold import, instructions (callgrind): ours / floor, before #10 / floor, seed+PyJWT / ours",
            _cold_ratios(cold_counted) if cold_counted else "n/a (no valgrind)",
        ),
        (
            "warm lambda_handler, calls/s: ours / before #10",
            f"{warm['ours']:,.0f} / {warm['baseline']:,.0f} ({warm['ours'] / warm['baseline']:.2f}x)",
        ),
        (
            "warm lambda_handler, instructions per call (callgrind): ours / before #10",
            f"{counted['ours']:,.0f} / {counted['baseline']:,.0f} ({counted['baseline'] / counted['ours']:.2f}x fewer)"
            if counted
            else "n/a (no valgrind)",
        ),
        ("6 MB base64 event: time / (b64decode + sha256)", f"{time_ratio:.2f}x"),
        ("6 MB base64 event: peak extra memory / body", f"{memory_ratio:.2f}x"),
    ]


def main() -> int:
    try:
        import awslambdaric  # noqa: F401
    except ImportError:
        print(f"Python {sys.version.split()[0]}: no Lambda runtime is this version, so no Lambda path to measure")
        return 0
    print(f"Python {sys.version.split()[0]}: the Lambda path, after the runtime client, from source, best of {RUNS}")
    for name, value in rows():
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
