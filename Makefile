# LabelHub: the two commands are `make demo` and `make test`; the rest are the steps they use.
# Every target is a script in scripts/ so it also works without make.

PY      := .venv/bin/python
BENCH   ?= $(PY) bench/annotate_load.py
ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help setup services db migrate demo-data demo start stop restart status logs web worker \
        worker-gpu test lint format bench-annotate clean-demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-15s %s\n", $$1, $$2}'

setup: ## create .venv (Python 3.11) and install the project with test extras (torch pinned)
	scripts/setup.sh

services: ## make sure ffmpeg, PostgreSQL and Redis are installed and running
	scripts/services.sh

db: setup services ## create the database if missing
	$(PY) scripts/ensure_db.py

migrate: db ## apply migrations
	$(PY) manage.py migrate --noinput

demo-data: migrate ## demo users + demo clips through the real ingest (needs a worker: make start)
	$(PY) manage.py seed_demo

demo: ## everything: setup, services, database, web + workers in the background, demo data
	scripts/demo.sh

start: ## start web + workers in the background (logs in var/log, pids in var/run)
	scripts/start.sh

stop: ## stop web + workers started by make demo / make start
	scripts/stop.sh

restart: start ## restart web + workers

status: ## show which background processes run
	@for n in web worker worker-gpu; do \
	  if [ -s var/run/$$n.pid ] && kill -0 $$(cat var/run/$$n.pid) 2>/dev/null; then \
	    echo "$$n: running (pid $$(cat var/run/$$n.pid))"; else echo "$$n: stopped"; fi; done

logs: ## follow the logs of the background processes
	tail -F var/log/web.log var/log/worker.log var/log/worker-gpu.log

web: ## run the web server in the foreground (gunicorn, gunicorn.conf.py)
	$(PY) manage.py collectstatic --noinput -v 0
	.venv/bin/gunicorn -c gunicorn.conf.py

worker: ## run a Celery worker for the 'default' queue in the foreground
	.venv/bin/celery -A labelhub worker -Q default -n worker@%h --beat --schedule var/run/celerybeat-schedule --loglevel INFO

worker-gpu: ## run a Celery worker for the 'gpu' queue in the foreground (one task at a time)
	.venv/bin/celery -A labelhub worker -Q gpu -n worker-gpu@%h --concurrency 1 --prefetch-multiplier 1 --loglevel INFO

test: ## run the whole test suite (real Postgres, Redis, ffmpeg, Chromium); ARGS="-k x" for pytest
	scripts/test.sh $(ARGS)

lint: ## ruff lint + format check + the architecture contract (import-linter, pyproject.toml)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

format: ## ruff format + autofix
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench-annotate: setup services ## load benchmark of the annotation API (50 annotators, 3,000 clips)
	$(BENCH) $(ARGS)

clean-demo: stop ## drop the demo database and var/ (media, imports, logs)
	$(PY) -c "import psycopg; from labelhub import settings as s; d = s.DATABASES['default']; \
	  c = psycopg.connect(dbname='postgres', user=d['USER'], password=d['PASSWORD'] or None, host=d['HOST'], port=d['PORT'], autocommit=True); \
	  c.execute('DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)' % d['NAME'])"
	rm -rf var/media var/import var/static var/log var/run

.PHONY: check-deploy fuzz docs-check
docs-check: ## run every command of README "The loop, by hand" in a new shell, against a demo database
	scripts/test.sh tests/test_readme_loop.py -v $(ARGS)

check-deploy: setup ## manage.py check --deploy under the documented production environment
	scripts/check_deploy.sh

fuzz: ## Schemathesis over the API schema as annotator, lead and admin (also part of make test)
	scripts/test.sh tests/test_api_fuzz.py -v $(ARGS)
