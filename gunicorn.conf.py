"""Gunicorn settings for LabelHub's web process (``gunicorn -c gunicorn.conf.py``).

Threaded sync workers: requests are short and mostly wait on Postgres, so a few processes with a
few threads each keep every core busy without one process per request. Override any of these
with gunicorn's own ``GUNICORN_CMD_ARGS`` (for example ``--workers 8 --bind 0.0.0.0:8000``).
"""

import multiprocessing
import os

wsgi_app = "labelhub.wsgi:application"
bind = os.environ.get("LABELHUB_WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LABELHUB_WEB_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 9)))
worker_class = "gthread"
threads = int(os.environ.get("LABELHUB_WEB_THREADS", 4))
timeout = 60  # media responses stream in chunks; nothing legitimate takes a minute
graceful_timeout = 20
keepalive = 5
max_requests = 5000  # recycle workers now and then; jitter so they do not restart together
max_requests_jitter = 500


def post_worker_init(worker):
    """Serve /static/ (collected into STATIC_ROOT) from each worker with WhiteNoise.

    Gunicorn, unlike runserver, serves no static files; the annotator page needs its JS. Skipped
    when the settings already install WhiteNoise's middleware.
    """
    from django.conf import settings
    from whitenoise import WhiteNoise

    if "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE:
        return
    worker.wsgi = WhiteNoise(
        worker.wsgi, root=str(settings.STATIC_ROOT), prefix=settings.STATIC_URL
    )
