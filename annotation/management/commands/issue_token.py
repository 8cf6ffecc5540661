"""A new API token for a user, printed once: ``manage.py issue_token lead``.

The database keeps only its digest (labelhub.security), so DRF's ``drf_create_token`` (which
stores and prints a raw key) makes keys that do not authenticate here; use this instead.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelhub.security import issue_token


class Command(BaseCommand):
    help = "Issue a new API token for a user (replacing the previous one) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None or not user.is_active:
            raise CommandError(f"no active user named {options['username']!r}")
        self.stdout.write(issue_token(user))
