#!/usr/bin/env bash
# One command from a fresh Debian machine to a running LabelHub with demo data:
# venv + deps, PostgreSQL + Redis + ffmpeg, database + migrations, web + workers in the
# background, demo users, demo clips rendered here and imported through the real ingest path.
# Safe to run again: nothing is duplicated, and the processes are restarted on the current code.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/services.sh"
"$PY" "$ROOT/scripts/ensure_db.py"
say "migrating"
"$PY" manage.py migrate --noinput -v 0

# Workers first: the import below queues one ingest task per clip on the 'default' queue.
"$ROOT/scripts/start.sh"
say "seeding demo users and clips"
"$PY" manage.py seed_demo

BIND="${LABELHUB_WEB_BIND:-127.0.0.1:8000}"
round_id="$("$PY" manage.py shell -v 0 -c "from annotation.models import Round; print(Round.objects.get(name='demo-round-1').pk)" 2>/dev/null | tail -n 1)"
cat <<MSG

LabelHub is running at http://$BIND/
  annotate:    http://$BIND/annotate/$round_id/   (log in as annotator / annotator-demo)
  lead pages:  http://$BIND/   (lead / lead-demo)
  admin:       http://$BIND/django-admin/   (admin / admin-demo)
  API schema:  http://$BIND/api/schema/
Logs: var/log/ (web.log, web-access.log, worker.log, worker-gpu.log)   Stop: make stop
MSG
