"""`make package`, after `python -m build` and `twine check`: `python3 dev/check_package.py DIST`.

Checks that the sdist and the wheel in DIST hold exactly what pip should install (qstash_verify.py,
its metadata and the licence: never tests/, dev/, examples/ or lambda_function.py). Then installs
each, and the checkout as `pip install .`, into a fresh virtual environment and runs `qstash-verify
sign` and `verify` there, from a folder without the checkout on the path.
"""

from __future__ import annotations

import ast
import email
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "qstash_verify.py"
COMMAND = "qstash-verify"
URL = "https://hooks.example.com/api/qstash"
BODY = '{"id":1}'
KEYS = {"QSTASH_CURRENT_SIGNING_KEY": "sig_package_current", "QSTASH_NEXT_SIGNING_KEY": "sig_package_next"}


def version() -> str:
    """`__version__`, read as flit reads it: from the source, without importing it."""
    for node in ast.parse((ROOT / MODULE).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return str(ast.literal_eval(node.value))
    raise SystemExit(f"no __version__ in {MODULE}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"check_package: {message}")


def check_wheel(wheel: Path, info: str) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {MODULE, *(f"{info}/{name}" for name in ("METADATA", "WHEEL", "RECORD", "entry_points.txt"))}
    check(names == expected | {f"{info}/licenses/LICENSE"}, f"{wheel.name} holds {sorted(names)}")
    metadata = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{info}/METADATA"))
    check(metadata["Version"] == version(), f"wheel version {metadata['Version']}, __version__ {version()}")
    check(metadata["Requires-Python"] == ">=3.9", f"Requires-Python {metadata['Requires-Python']}")
    check(metadata.get_all("Requires-Dist") is None, "the wheel has runtime dependencies")
    check(metadata["License-Expression"] == "MIT", "the wheel's licence is not MIT")
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    check(f"{COMMAND}=qstash_verify:_main" in entry_points.replace(" ", ""), f"entry points: {entry_points}")


def check_sdist(sdist: Path, top: str) -> None:
    with tarfile.open(sdist) as archive:
        names = {name for name in archive.getnames() if name != top}
    expected = {f"{top}/{name}" for name in (MODULE, "LICENSE", "README.md", "pyproject.toml", "PKG-INFO")}
    check(names == expected, f"{sdist.name} holds {sorted(names)}")


def smoke(artifact: Path) -> None:
    """Install ``artifact`` into a fresh venv and sign and verify with its command, away from the checkout."""
    with tempfile.TemporaryDirectory() as folder:
        env_dir = Path(folder) / "venv"
        venv.create(env_dir, with_pip=True)
        bin_dir = env_dir / "bin"
        quiet = ["-q", "--disable-pip-version-check"]
        subprocess.run([bin_dir / "python", "-m", "pip", "install", *quiet, artifact], check=True, cwd=folder)
        env = {**{k: v for k, v in os.environ.items() if "QSTASH" not in k}, **KEYS}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [bin_dir / COMMAND, *args], env=env, cwd=folder, capture_output=True, text=True, check=False
            )

        check(run("--help").stdout.startswith(f"usage: {COMMAND}"), "--help does not name the command")
        token = run("sign", "--url", URL, "--body", BODY).stdout.strip()
        verified = run("verify", "--signature", token, "--url", URL, "--body", BODY)
        check(verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True, verified.stderr)
        tampered = run("verify", "--signature", token, "--url", URL, "--body", BODY + " ")
        check(tampered.returncode == 1 and "body_mismatch" in tampered.stderr, tampered.stderr)
        where = [bin_dir / "python", "-c", "import qstash_verify as q; print(q.__file__, q.__version__)"]
        installed = subprocess.run(where, cwd=folder, capture_output=True, text=True, check=True).stdout.split()
        check(Path(installed[0]).is_relative_to(env_dir) and installed[1] == version(), f"imported {installed}")
        name = "pip install ." if artifact == ROOT else artifact.name
        print(f"{name}: installed in a fresh venv; {COMMAND} signs, verifies and rejects a tampered body")


def main() -> int:
    dist = Path(sys.argv[1] if len(sys.argv) > 1 else "dist").resolve()
    stem = f"qstash_verify-{version()}"
    wheel, sdist = dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"
    check(sorted(dist.iterdir()) == sorted([wheel, sdist]), f"{dist} holds {sorted(p.name for p in dist.iterdir())}")
    check_wheel(wheel, f"{stem}.dist-info")
    check_sdist(sdist, stem)
    print(f"{wheel.name} and {sdist.name} hold {MODULE}, its metadata and the licence, nothing else")
    for artifact in (wheel, sdist, ROOT):
        smoke(artifact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
