#!/usr/bin/env bash
# `make test-all`: the suite on every Python 3.9-3.14 found here, each in its own venv with pinned
# pytest; on the newest one with warnings as errors.
set -uo pipefail
cd "$(dirname "$0")/.."

mapfile -t found < <(bash dev/pythons.sh)
[ ${#found[@]} -gt 0 ] || { echo "test-all: no Python 3.9-3.14 interpreter found"; exit 1; }
newest=${found[-1]%% *}
failed=()
for line in "${found[@]}"; do
  v=${line%% *}; py=${line#* }
  echo "== Python $v ($py)"
  venv=".venv-$v"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    "$py" -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r dev/requirements.txt || { failed+=("$v (set-up)"); continue; }
  fi
  warnings=(); [ "$v" = "$newest" ] && warnings=(-W error)
  "$venv/bin/python" -m pytest -p no:cacheprovider "${warnings[@]}" || failed+=("$v")
done

if [ ${#failed[@]} -gt 0 ]; then echo "test-all: FAILED on Python ${failed[*]}"; exit 1; fi
echo "test-all: passed on ${#found[@]} interpreter(s): $(printf '%s ' "${found[@]%% *}")(warnings as errors on $newest)"
