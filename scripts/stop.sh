#!/usr/bin/env bash
# Stop what scripts/start.sh started (by the pids in var/run/), politely first:
# TERM lets gunicorn finish requests and Celery finish (or, acks_late, hand back) its tasks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1

stopped=0
for name in web worker worker-gpu; do
    pidfile="$RUN_DIR/$name.pid"
    [ -f "$pidfile" ] || continue
    if pid_alive "$pidfile"; then
        pid="$(cat "$pidfile")"
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name (pid $pid) still running after 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
    fi
    rm -f "$pidfile"
done
[ "$QUIET" -eq 1 ] || [ "$stopped" -gt 0 ] || say "nothing was running"
