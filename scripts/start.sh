#!/usr/bin/env bash
# Start the web server (gunicorn) and the Celery workers in the background.
# Logs in var/log/, pid files in var/run/. A process already running is restarted so it runs the
# current code. Stop them all with scripts/stop.sh (make stop).
#   web:        gunicorn on $LABELHUB_WEB_BIND (default 127.0.0.1:8000), gunicorn.conf.py
#   worker:     Celery, queue 'default' (ingest, aggregates, exports), 2 processes, + beat
#   worker-gpu: Celery, queue 'gpu' (training, scoring, generation), one task at a time
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# The configuration is the project's .env (written by make demo if missing; a production host
# writes its own), with variables set in this shell winning.
need_venv
write_dev_env
load_env
mkdir -p "$LOG_DIR" "$RUN_DIR"
cd "$ROOT"

"$ROOT/scripts/stop.sh" --quiet

# The web workers serve STATIC_ROOT (gunicorn.conf.py); collect the current static files into it.
"$PY" manage.py collectstatic --noinput -v 0
BIND="${LABELHUB_WEB_BIND:-127.0.0.1:8000}"
say "starting web (gunicorn on $BIND)"
"$VENV/bin/gunicorn" -c "$ROOT/gunicorn.conf.py" --bind "$BIND" --daemon \
    --pid "$RUN_DIR/web.pid" --error-logfile "$LOG_DIR/web.log" --access-logfile "$LOG_DIR/web-access.log" \
    --capture-output

start_worker() {  # NAME QUEUE EXTRA_ARGS...
    local name="$1" queue="$2"
    shift 2
    say "starting $name (Celery, queue '$queue')"
    "$VENV/bin/celery" --workdir "$ROOT" -A labelhub worker --detach -Q "$queue" -n "$name@%h" \
        --pidfile "$RUN_DIR/$name.pid" --logfile "$LOG_DIR/$name.log" --loglevel INFO "$@"
}
# The default worker also runs beat: it marks GPU runs whose worker died as failed (resumable).
start_worker worker default --concurrency "${LABELHUB_WORKER_CONCURRENCY:-2}" \
    --beat --schedule "$RUN_DIR/celerybeat-schedule"
start_worker worker-gpu gpu --concurrency 1 --prefetch-multiplier 1

# Wait until the web server answers and both workers have written their pid files.
url="http://$BIND/accounts/login/"
for _ in $(seq 1 60); do
    if "$PY" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$url', timeout=2).status != 200)" 2>/dev/null \
        && pid_alive "$RUN_DIR/worker.pid" && pid_alive "$RUN_DIR/worker-gpu.pid"; then
        say "web and workers are up (logs in var/log/)"
        exit 0
    fi
    sleep 1
done
die "web or workers did not come up in 60 s; see $LOG_DIR/web.log, worker.log, worker-gpu.log"
