#!/usr/bin/env bash
# `make test-integration`: install the real servers (pinned, into .venv-integration) and Debian's
# nginx when missing, then run the tests marked `integration`.  Needs PyPI and Debian's archive once.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-integration
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flask, fastapi, uvicorn, django, gunicorn' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r dev/requirements-integration.txt
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  else
    echo "nginx is missing: sudo apt-get install nginx (the nginx tests are skipped without it)"
  fi
fi
"$venv/bin/python" -m pytest -p no:cacheprovider -m integration "$@"
