"""Gunicorn settings for LabelHub's web process (``gunicorn -c gunicorn.conf.py``).

Threaded sync workers, more processes than threads: requests are short and spend about half their
time in Python (the ORM), which one process's threads cannot run at once (the GIL). On a shared
2-core machine bench/annotate_load.py measured next-clip p99 of 73-117 ms at 6 x 2 and 113-123 ms
at 3 x 4 (noisy); the default is 2 processes per core with 2 threads each. Each worker holds
~500 MB while the URLconf imports torch (scoring), hence the cap. Override any of these
with gunicorn's own ``GUNICORN_CMD_ARGS`` (for example ``--workers 8 --bind 0.0.0.0:8000``).
"""

import multiprocessing
import os

wsgi_app = "labelhub.wsgi:application"
bind = os.environ.get("LABELHUB_WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("LABELHUB_WEB_WORKERS", min(2 * multiprocessing.cpu_count(), 8)))
worker_class = "gthread"
threads = int(os.environ.get("LABELHUB_WEB_THREADS", 2))
timeout = 60  # media responses stream in chunks; nothing legitimate takes a minute
graceful_timeout = 20
keepalive = 5
max_requests = 5000  # recycle workers now and then; jitter so they do not restart together
max_requests_jitter = 500


def post_worker_init(worker):
    """Before a worker takes requests: import every URL module, and serve /static/ with WhiteNoise.

    Django imports the URLconf (and with it every view module and what they import) on the first
    request; done here, that cost is paid at boot instead of by an annotator's request.
    Gunicorn, unlike runserver, serves no static files, and the annotator page needs its JS:
    WhiteNoise serves STATIC_ROOT unless the settings already install its middleware.
    """
    from django.conf import settings
    from django.urls import get_resolver
    from whitenoise import WhiteNoise

    get_resolver().url_patterns  # noqa: B018 - the import is the point

    if "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE:
        return
    worker.wsgi = WhiteNoise(
        worker.wsgi, root=str(settings.STATIC_ROOT), prefix=settings.STATIC_URL
    )
