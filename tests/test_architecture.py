"""The architecture holds: loading the URLconf (every view and API) never imports torch nor the
OpenAPI generator, every job kind has its function, and no app writes another app's tables."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "diffusers", "peft", "accelerate")
# drf-spectacular's generator (and django.test with it) loads when the schema is generated, not
# with every view that declares its schema (labelhub/schema_docs.py).
SCHEMA_ONLY = ("drf_spectacular.openapi", "drf_spectacular.generators", "labelhub.schema")

PROBE = f"""
import json, sys, django
django.setup()
import labelhub.urls  # noqa: F401  (every view and API module)
from django.urls import get_resolver
get_resolver().url_patterns
import runs.tasks, annotation.tasks  # noqa: F401  (the default-queue worker's tasks)
print(json.dumps([name for name in {HEAVY + SCHEMA_ONLY!r} if name in sys.modules]))
"""


def test_urlconf_and_default_worker_tasks_import_no_ml_libraries_nor_the_schema_generator():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelhub.settings", "LABELHUB_DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_job_kind_has_a_registered_job_function():
    from runs.jobs import job_function
    from runs.models import Run

    for kind in Run.Kind.values:
        assert callable(job_function(kind)), kind


# Each app writes only its own tables, through its own services (STYLE.md): another app calls
# those services. Writes are spotted as ``Model.objects....<write>(...)`` and ``Model(...)``
# instances handed to bulk writes; an instance's ``.save()`` cannot be typed from source.
APPS = ("annotation", "scoring", "training", "runs")
WRITES = {"create", "get_or_create", "update_or_create", "bulk_create", "bulk_update", "update"}
WRITES |= {"delete"}


def _model_names(app: str) -> set[str]:
    tree = ast.parse((ROOT / app / "models.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def _root_name(node) -> str | None:
    """``Clip`` for ``Clip.objects.filter(...).update``: the name a call chain starts from."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def cross_app_writes(source: str, foreign_models: set[str]) -> list[str]:
    """Writes in ``source`` to a model of ``foreign_models`` (by class name)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        chain = ast.unparse(node.func)
        if node.func.attr in WRITES and ".objects" in chain:
            if _root_name(node.func) in foreign_models:
                found.append(f"{node.lineno}: {chain}")
        if node.func.attr in {"bulk_update", "bulk_create"}:  # Clip(pk=...) rows of another app
            for arg in ast.walk(node):
                if isinstance(arg, ast.Call) and getattr(arg.func, "id", None) in foreign_models:
                    found.append(f"{node.lineno}: {chain} of {arg.func.id}(...)")
    return found


def test_the_write_detector_sees_a_cross_app_write():
    assert cross_app_writes("Round.objects.get_or_create(name='x')", {"Round"}) == [
        "1: Round.objects.get_or_create"
    ]
    assert cross_app_writes("Clip.objects.filter(pk=1).update(x=1)", {"Clip"})
    assert cross_app_writes("M.objects.bulk_update([Clip(pk=1)], ['x'])", {"Clip"})
    assert cross_app_writes("Clip.objects.filter(pk=1).first()", {"Clip"}) == []


def test_no_app_writes_another_apps_models():
    models = {app: _model_names(app) for app in APPS}
    offenders = []
    for app in APPS:
        foreign = set().union(*(names for other, names in models.items() if other != app))
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for write in cross_app_writes(path.read_text(), foreign):
                offenders.append(f"{path.relative_to(ROOT)}:{write}")
    assert offenders == []


def test_models_and_migrations_agree(db):
    """A model change without its migration fails here, not on a deployment's ``migrate``."""
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
