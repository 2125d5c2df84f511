#!/usr/bin/env bash
# `make bench` (and `make bench-cold` with --cold): on the Pythons in BENCH_PYTHONS found here (by
# default 3.9, the oldest supported, and 3.10, 3.11 and 3.13, Lambda runtimes), each in its own
# .venv-bench-3.X with dev/requirements-bench.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

mapfile -t found < <(bash dev/pythons.sh)
[ ${#found[@]} -gt 0 ] || { echo "bench: no Python 3.9-3.14 interpreter found"; exit 1; }
failed=()
for line in "${found[@]}"; do
  v=${line%% *}; py=${line#* }
  [[ " ${BENCH_PYTHONS:-3.9 3.10 3.11 3.13} " == *" $v "* ]] || continue
  venv=".venv-bench-$v"
  { [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"; } &&
    "$venv/bin/pip" install -q --disable-pip-version-check -r dev/requirements-bench.txt || { failed+=("$v (set-up)"); continue; }
  echo
  if [ "${1:-}" != "--cold" ]; then "$venv/bin/python" dev/bench.py || failed+=("$v"); fi
  "$venv/bin/python" dev/bench_lambda.py "$@" || failed+=("$v")
done
if [ ${#failed[@]} -gt 0 ]; then echo "bench: FAILED on Python ${failed[*]}"; exit 1; fi
