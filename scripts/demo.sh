#!/usr/bin/env bash
# One command from a fresh Debian machine to a running LabelHub with demo data:
# venv + deps, PostgreSQL + Redis + ffmpeg, database + migrations, web + workers in the
# background, demo users, demo clips rendered here and imported through the real ingest path,
# then one turn of the loop on the gpu worker (reward model, GAPO, generated round 2).
# Safe to run again: nothing is duplicated, and the processes are restarted on the current code.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
# A demo machine: a development .env (DEBUG on, a fresh secret key, the local services) unless one
# exists; every command in a new shell reads it too. A production host writes its own .env.
write_dev_env
load_env
"$ROOT/scripts/services.sh"
"$PY" "$ROOT/scripts/ensure_db.py"
say "migrating"
"$PY" manage.py migrate --noinput -v 0

# Workers first: the import below queues one ingest task per clip on the 'default' queue.
"$ROOT/scripts/start.sh"
say "seeding demo users and clips"
"$PY" manage.py seed_demo
# The runs go to the gpu worker started above, as if launched from the Training runs page.
say "closing the loop once: export, reward model, scores, pairs, GAPO, round 2 (gpu worker)"
"$PY" manage.py seed_demo_loop

BIND="${LABELHUB_WEB_BIND:-127.0.0.1:8000}"
round_ids="$("$PY" manage.py shell -v 0 -c "from annotation.models import Round; print(*(Round.objects.get(name=n).pk for n in ('demo-round-1', 'demo-round-2')))" 2>/dev/null | tail -n 1)"
read -r round_1 round_2 <<<"$round_ids"
cat <<MSG

LabelHub is running at http://$BIND/
  annotate:    http://$BIND/annotate/$round_1/   (log in as annotator / annotator-demo)
  round 2:     http://$BIND/annotate/$round_2/   (candidates the GAPO policy generated)
  judge pairs: http://$BIND/pairwise/
  lead pages:  http://$BIND/   (lead / lead-demo)
  admin:       http://$BIND/runs/, http://$BIND/reward-models/   (admin / admin-demo)
  API schema:  http://$BIND/api/schema/
Logs: var/log/ (web.log, web-access.log, worker.log, worker-gpu.log)   Stop: make stop
MSG
