"""manage.py launch_run KIND key=value ...: launch a pairs / GAPO / DPO / SFT / generation run.

The run goes to the gpu queue like one launched from the page; ``--wait`` follows its progress.
"""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runs.cli import follow
from runs.services import queue_for
from training.services.launch import LAUNCHABLE_KINDS, InvalidParams, launch_run


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"parameters are key=value, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


class Command(BaseCommand):
    help = (
        "Launch a training run. Examples: launch_run pairs round_id=3 origin=human_labels; "
        "launch_run gapo round_id=3 origin=human_labels max_steps=200; "
        "launch_run generation source_round_id=3 target_round=round-4 checkpoint_id=2"
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=LAUNCHABLE_KINDS)
        parser.add_argument(
            "params", nargs="*", help="key=value (values parsed as JSON when they can be)"
        )
        parser.add_argument("--user", help="username recorded as the launcher")
        parser.add_argument(
            "--wait", action="store_true", help="follow the run's progress until it ends"
        )

    def handle(self, *args, kind: str, params: list[str], user: str | None, wait: bool, **options):
        launcher = get_user_model().objects.filter(username=user).first() if user else None
        if user and launcher is None:
            raise CommandError(f"no user {user!r}")
        try:
            run = launch_run(kind=kind, params=parse_params(params), created_by=launcher)
        except InvalidParams as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"launched {run} (queue: {queue_for(run.params)})")
        if wait:
            follow(run.pk, self.stdout)
            self.stdout.write(self.style.SUCCESS(f"run {run.pk} succeeded"))
