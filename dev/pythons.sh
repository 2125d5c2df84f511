#!/usr/bin/env bash
# Print one interpreter per Python version found here (3.9-3.14): PATH first, then pyenv's
# install folder (its shims answer only for the active version).  `make test-all` and CI share it.
set -uo pipefail
for v in 3.9 3.10 3.11 3.12 3.13 3.14; do
  for candidate in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v".*/bin/python"$v"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      echo "$v $(command -v "$candidate")"
      break
    fi
  done
done
