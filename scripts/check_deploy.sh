#!/usr/bin/env bash
# `manage.py check --deploy` under the production environment documented in README
# ("Production settings"); any warning fails. Variables already set (a real deployment's own)
# are used as they are; the rest get example values, and the secret key a random one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_venv
cd "$ROOT"

export LABELHUB_DEBUG=0
export LABELHUB_SECRET_KEY="${LABELHUB_SECRET_KEY:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')}"
export LABELHUB_ALLOWED_HOSTS="${LABELHUB_ALLOWED_HOSTS:-labelhub.example.org}"
export LABELHUB_CSRF_TRUSTED_ORIGINS="${LABELHUB_CSRF_TRUSTED_ORIGINS:-https://labelhub.example.org}"
export LABELHUB_PROXY_SSL_HEADER="${LABELHUB_PROXY_SSL_HEADER:-1}"
export LABELHUB_CACHE_URL="${LABELHUB_CACHE_URL:-redis://127.0.0.1:6379/1}"
say "manage.py check --deploy (DEBUG off, hosts $LABELHUB_ALLOWED_HOSTS)"
"$PY" manage.py check --deploy --fail-level WARNING
