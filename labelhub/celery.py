"""The Celery app. Tasks are declared with ``@app.task(name=...)`` from this module so the app is
configured wherever a task is imported (web process, worker, shell)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")

app = Celery("labelhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["runs", "annotation", "scoring", "training"])
