"""Gunicorn settings for LabelHub's web process (``gunicorn -c gunicorn.conf.py``).

Threaded sync workers, more processes than threads: requests are short and spend about half their
time in Python (the ORM), which one process's threads cannot run at once (the GIL). On a shared
2-core machine bench/annotate_load.py measured next-clip p99 of 73-117 ms at 6 x 2 and 113-123 ms
at 3 x 4 (noisy); the default is 2 processes per core with 2 threads each. The app is preloaded in the master, so workers
share the ~500 MB the URLconf imports (torch, for the scoring views). Override any of these
with gunicorn's own ``GUNICORN_CMD_ARGS`` (for example ``--workers 8 --bind 0.0.0.0:8000``).
"""

import multiprocessing
from pathlib import Path

from labelhub.env import Env, default_env_file

# The environment first, then the project's .env, as for the settings.
_env = Env(default_env_file(Path(__file__).resolve().parent))

wsgi_app = "labelhub.wsgi:application"
bind = _env.str("LABELHUB_WEB_BIND", "127.0.0.1:8000")
workers = _env.int("LABELHUB_WEB_WORKERS", min(2 * multiprocessing.cpu_count(), 8))
worker_class = "gthread"
threads = _env.int("LABELHUB_WEB_THREADS", 2)
timeout = 60  # media responses stream in chunks; nothing legitimate takes a minute
graceful_timeout = 20
keepalive = 5
max_requests = 5000  # recycle workers now and then; jitter so they do not restart together
max_requests_jitter = 500


# Load Django and every URL module once in the master, then fork: workers share those pages
# (torch included, imported by the scoring views) and none pays the import on a first request.
preload_app = True


def when_ready(server):
    """Import every URL module (and what the views import) before the workers are forked."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the import is the point
