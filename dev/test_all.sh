#!/usr/bin/env bash
# `make test-all`: the suite on every Python 3.9-3.13 found here, each in its own venv with pinned pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

find_python() {  # PATH first, then pyenv's install folder (its shims only answer for the active version)
  local v=$1 candidate
  for candidate in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v".*/bin/python"$v"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

ran=0; failed=()
for v in 3.9 3.10 3.11 3.12 3.13; do
  if ! py=$(find_python "$v"); then
    echo "== Python $v: not found, skipped"; continue
  fi
  echo "== Python $v ($py)"
  venv=".venv-$v"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    "$py" -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r dev/requirements.txt || { failed+=("$v (set-up)"); continue; }
  fi
  if "$venv/bin/python" -m pytest -p no:cacheprovider; then ran=$((ran + 1)); else failed+=("$v"); fi
done

if [ ${#failed[@]} -gt 0 ]; then echo "test-all: FAILED on Python ${failed[*]}"; exit 1; fi
if [ "$ran" -eq 0 ]; then echo "test-all: no Python 3.9-3.13 interpreter found"; exit 1; fi
echo "test-all: passed on $ran interpreter(s)"
