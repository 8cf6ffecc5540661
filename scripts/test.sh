#!/usr/bin/env bash
# Run the whole test suite against real PostgreSQL, Redis, ffmpeg and Chromium.
# Arguments go to pytest (e.g. scripts/test.sh -k ingest -x). Exit code is pytest's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/services.sh" --test
say "pytest $*"
exec "$PY" -m pytest "$@"
