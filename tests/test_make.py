"""`make test` with a Python that has no pytest: .venv is made and filled once, then reused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

# A Python without pytest (or with, given HAS_PYTEST=1) whose `-m venv DIR` makes a venv of stand-ins:
# every call is logged, nothing is installed or run.
FAKE_PYTHON = r"""#!/bin/sh
echo "python $*" >> "$LOG"
[ "$1" = -c ] && exit "$((1 - ${HAS_PYTEST:-0}))"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  for tool in pip python; do printf '#!/bin/sh\necho "venv-%s $*" >> "$LOG"\n' "$tool" > "$3/bin/$tool"; done
  chmod +x "$3/bin/pip" "$3/bin/python"
fi
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_test(folder: Path, **env: str) -> list[str]:
    """Run `make test` in ``folder`` with the fake Python; return the calls it made."""
    log = folder / "calls.log"
    log.write_text("")
    subprocess.run(
        ["make", "-s", "test", f"PYTHON={folder / 'python'}"],
        cwd=folder,
        env={**os.environ, "LOG": str(log), **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return [line.split()[0] + " " + line.split()[1] for line in log.read_text().splitlines()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "dev").mkdir()
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "dev" / "requirements.txt", tmp_path / "dev")
    (tmp_path / "python").write_text(FAKE_PYTHON)
    (tmp_path / "python").chmod(0o755)
    return tmp_path


def test_without_pytest_the_venv_is_made_and_filled_once_then_reused(checkout: Path) -> None:
    first = make_test(checkout)
    assert first == ["python -c", "python -m", "venv-pip install", "venv-python -m"]
    for _ in range(2):
        assert make_test(checkout) == ["python -c", "venv-python -m"]


def test_new_requirements_are_installed_into_the_same_venv(checkout: Path) -> None:
    make_test(checkout)
    requirements = checkout / "dev" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "\n")
    later = os.stat(checkout / ".venv" / ".requirements").st_mtime + 10
    os.utime(requirements, (later, later))
    assert make_test(checkout) == ["python -c", "venv-pip install", "venv-python -m"]


def test_with_pytest_no_venv_is_made(checkout: Path) -> None:
    assert make_test(checkout, HAS_PYTEST="1") == ["python -c", "python -m"]
    assert not (checkout / ".venv").exists()
