"""manage.py seed_demo: demo users, demo clips loaded through the real ingest path, a few ratings.

Idempotent: users are updated in place, clips already in the demo round are not imported again,
and the demo raters only rate clips they have not rated yet.

1. users ``annotator``, ``lead`` and ``admin`` (a superuser only with DEBUG on, as in
   ``make demo``) with the printed demo passwords;
2. the demo clips (``annotation.demo``: 12 conditions x 4 sources) imported with ``import_clips --create-round`` (a Celery
   worker, or ``LABELHUB_CELERY_EAGER=1``, runs the ingest tasks);
3. two demo raters score every clip through the same services as the API (lease, then submit),
   with scores that follow each made-up generator's artefacts, so the lead pages have labels and
   each clip still needs one more rating from the ``annotator`` user.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from annotation import media
from annotation.demo import DEMO_ROUND, default_demo_dir, hash_text, render_demo_set
from annotation.models import Clip, Round
from annotation.services.assignment import lease_next_clip
from annotation.services.ratings import submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import ADMIN, ANNOTATOR, LEAD, ROLES

# username -> (password, roles, superuser). Demo machines only: the passwords are printed.
DEMO_USERS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "annotator": ("annotator-demo", (ANNOTATOR,), False),
    "lead": ("lead-demo", (LEAD,), False),
    "admin": ("admin-demo", (ADMIN,), True),
}
DEMO_RATERS = ("demo-rater-1", "demo-rater-2")

# A rater's typical score per dimension for each made-up generator (``annotation.demo``).
TYPICAL_SCORES: dict[str, dict[str, int]] = {
    "ground_truth": dict.fromkeys(DIMENSION_KEYS, 5),
    "hailuo": {
        "visual_smoothness": 3,
        "visual_motion": 4,
        "visual_appeal": 4,
        "text_consistency": 4,
        "image_consistency": 4,
        "character_consistency": 4,
    },
    "vidu": {
        "visual_smoothness": 4,
        "visual_motion": 4,
        "visual_appeal": 3,
        "text_consistency": 4,
        "image_consistency": 2,
        "character_consistency": 3,
    },
    "cogvideox": {
        "visual_smoothness": 2,
        "visual_motion": 3,
        "visual_appeal": 2,
        "text_consistency": 3,
        "image_consistency": 3,
        "character_consistency": 2,
    },
}


def ensure_user(username: str, password: str, roles: tuple[str, ...], superuser: bool) -> User:
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = user.is_superuser = superuser
    user.save()
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def pending_rows(manifest: Path, round_: Round | None) -> list[dict]:
    """Manifest rows whose video is not yet a clip of the round (same content hash)."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    if round_ is None:
        return rows
    present = set(round_.clips.values_list("original_sha256", flat=True))
    return [row for row in rows if media.sha256_file(manifest.parent / row["video"]) not in present]


def demo_scores(clip: Clip, rater: str) -> dict[str, int]:
    """The rater's scores for a clip: the generator's typical scores, nudged per rater and clip."""
    typical = TYPICAL_SCORES.get(clip.source_name, TYPICAL_SCORES["hailuo"])
    scores = {}
    for key in DIMENSION_KEYS:
        nudge = hash_text(f"{rater}|{clip.original_sha256}|{key}") % 5
        offset = {0: -1, 1: 1}.get(nudge, 0)  # 40% of scores one step off the typical one
        scores[key] = min(5, max(1, typical[key] + offset))
    return scores


class Command(BaseCommand):
    help = "Create demo users, import the demo clips through import_clips, add a few demo ratings."

    def add_arguments(self, parser):
        parser.add_argument("--no-ratings", action="store_true", help="Skip the demo raters")
        parser.add_argument(
            "--timeout", type=float, default=600, help="Seconds to wait for the ingest tasks"
        )

    def handle(self, *args, no_ratings: bool, timeout: float, **options):
        for role in ROLES:
            Group.objects.get_or_create(name=role)
        for username, (password, roles, superuser) in DEMO_USERS.items():
            if superuser and not settings.DEBUG:
                # A superuser whose password is printed belongs on a demo machine only.
                self.stderr.write(
                    f"DEBUG is off: {username!r} gets its roles but is not made a superuser"
                )
                superuser = False
            ensure_user(username, password, roles, superuser)

        out_dir = default_demo_dir()
        manifest = render_demo_set(out_dir)
        round_ = Round.objects.filter(name=DEMO_ROUND).first()
        rows = pending_rows(manifest, round_)
        if rows:
            pending = out_dir / "manifest-pending.jsonl"
            pending.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            self.stdout.write(f"importing {len(rows)} demo clip(s) from {manifest}")
            call_command(
                "import_clips",
                str(pending),
                round=DEMO_ROUND,
                create_round=True,
                timeout=timeout,
                stdout=self.stdout,
            )
            round_ = Round.objects.get(name=DEMO_ROUND)
        else:
            self.stdout.write(f"demo clips already imported into round '{DEMO_ROUND}'")
        if round_ is None:
            raise CommandError(f"round '{DEMO_ROUND}' was not created")
        ready = round_.clips.filter(status=Clip.Status.READY).count()
        if ready == 0:
            raise CommandError(
                "no demo clip is ready: is a Celery worker consuming the 'default' queue?"
            )

        if not no_ratings:
            rated = sum(self._rate_all(round_, rater) for rater in DEMO_RATERS)
            self.stdout.write(f"demo raters added {rated} rating(s)")

        self.stdout.write(self.style.SUCCESS(self._summary(round_, ready)))

    def _rate_all(self, round_: Round, username: str) -> int:
        """Let one demo rater score every clip the assignment service hands out."""
        rater = ensure_user(username, uuid.uuid4().hex, (ANNOTATOR,), False)
        rater.set_unusable_password()
        rater.save(update_fields=["password"])
        count = 0
        # Bounded: every lease ends in a rating, so each clip comes back at most once.
        for _ in range(round_.clips.count() + 1):
            lease = lease_next_clip(round_id=round_.pk, annotator=rater)
            if lease is None:
                break
            submit_rating(
                clip_id=lease.clip_id,
                annotator=rater,
                scores=demo_scores(lease.clip, username),
                seconds_spent=12.0,
                idempotency_key=uuid.uuid5(uuid.NAMESPACE_URL, f"{username}/{lease.clip_id}"),
            )
            count += 1
        return count

    def _summary(self, round_: Round, ready: int) -> str:
        need = round_.clips.filter(
            Q(status=Clip.Status.READY) & Q(rating_count__lt=round_.ratings_per_clip)
        ).count()
        logins = "\n".join(
            f"  {username:<10} password {password:<15} ({', '.join(roles)}"
            f"{', superuser' if superuser and settings.DEBUG else ''})"
            for username, (password, roles, superuser) in DEMO_USERS.items()
        )
        return (
            f"round '{round_.name}' (id {round_.pk}): {ready} ready clip(s), {need} still need ratings\n"
            f"annotate at /annotate/{round_.pk}/\n"
            f"logins:\n{logins}\n"
            f"media root: {settings.MEDIA_ROOT}"
        )
