"""The web path stays light: loading the URLconf (every view and API) never imports torch."""

import json
import os
import subprocess
import sys

HEAVY = ("torch", "transformers", "diffusers", "peft", "accelerate")

PROBE = f"""
import json, sys, django
django.setup()
import labelhub.urls  # noqa: F401  (every view and API module)
from django.urls import get_resolver
get_resolver().url_patterns
import runs.tasks, annotation.tasks  # noqa: F401  (the default-queue worker's tasks)
print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
"""


def test_urlconf_and_default_worker_tasks_import_no_ml_libraries():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelhub.settings", "LABELHUB_DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_job_kind_has_a_registered_job_function():
    from runs.jobs import job_function
    from runs.models import TrainingRun

    for kind in TrainingRun.Kind.values:
        assert callable(job_function(kind)), kind
