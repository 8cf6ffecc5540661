"""Export-scale benchmark: 30,000 clips, 90,000 ratings.

Times (a) a full ClipLabel recompute, (b) Krippendorff's alpha for all six dimensions,
(c) each export format, with Python peak memory (tracemalloc), beside Postgres
``COPY (SELECT ...) TO STDOUT`` of the same rows. Exports run on one round (10,000 clips) and on
all three (30,000) to show whether memory grows with the number of clips.

    LABELHUB_DB_NAME=labelhub_bench_export .venv/bin/python bench/export_scale.py

The database named by LABELHUB_DB_NAME is created if missing, migrated and wiped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")
os.environ.setdefault("LABELHUB_DB_NAME", "labelhub_bench_export")
os.environ.setdefault("LABELHUB_MEDIA_ROOT", tempfile.mkdtemp(prefix="labelhub-bench-media-"))

from _common import ensure_database  # noqa: E402

CLIPS, RATINGS_PER_CLIP, ANNOTATORS, ROUNDS, SOURCES = (
    30_000,
    3,
    30,
    3,
    ("ground_truth", "hailuo", "vidu"),
)


ensure_database()
import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from annotation import export_files as exports  # noqa: E402
from annotation.models import Round  # noqa: E402
from annotation.selectors.agreement import alpha_from_arrays, load_rating_arrays  # noqa: E402
from annotation.services.exports import create_snapshot  # noqa: E402
from annotation.services.labels import recompute_all_labels  # noqa: E402
from labelhub.dimensions import DIMENSION_KEYS  # noqa: E402


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotation_cliplabel, annotation_rating, annotation_lease, annotation_skip, "
            "annotation_goldreference, annotation_pairwisejudgement, annotation_pairwiselease, "
            "annotation_pairwisetask, annotation_clip, annotation_condition, annotation_exportsnapshot, "
            "annotation_importrow, annotation_importbatch, annotation_round CASCADE"
        )
    User.objects.filter(username__startswith="bench-").delete()
    users = User.objects.bulk_create([User(username=f"bench-{i}") for i in range(ANNOTATORS)])
    user_ids = [u.pk for u in users]
    rounds = [Round.objects.create(name=f"bench round {r}") for r in range(ROUNDS)]
    conditions = CLIPS // len(SOURCES)
    raw = connection.cursor().cursor
    with raw.copy(
        "COPY annotation_condition (id, content_hash, image, image_sha256, prompt, prompt_sha256, "
        "character_reference, created_at) FROM STDIN"
    ) as copy:
        for i in range(conditions):
            # Pairs of conditions share an image: the split has real components to keep whole.
            copy.write_row(
                (
                    i + 1,
                    sha(f"cond{i}"),
                    f"conditions/{i // 2}.png",
                    sha(f"img{i // 2}"),
                    f"prompt number {i}: a character turns and waves",
                    sha(f"prompt{i}"),
                    "",
                    "2026-01-01T00:00:00Z",
                )
            )
    clip_cols = (
        "id, round_id, condition_id, source_kind, source_name, original, original_sha256, video, "
        "poster, status, target_ratings, rating_count, created_at"
    )
    with raw.copy(f"COPY annotation_clip ({clip_cols}) FROM STDIN") as copy:
        for c in range(CLIPS):
            cond, source = c // len(SOURCES), SOURCES[c % len(SOURCES)]
            kind = "ground_truth" if source == "ground_truth" else "external"
            copy.write_row(
                (
                    c + 1,
                    rounds[cond * ROUNDS // conditions].pk,
                    cond + 1,
                    kind,
                    source,
                    f"originals/{c}.mp4",
                    sha(f"orig{c}"),
                    f"clips/{c}.mp4",
                    f"posters/{c}.jpg",
                    "ready",
                    RATINGS_PER_CLIP,
                    RATINGS_PER_CLIP,
                    "2026-01-01T00:00:00Z",
                )
            )
    rating_cols = (
        "clip_id, annotator_id, "
        + ", ".join(DIMENSION_KEYS)
        + ", seconds_spent, idempotency_key, is_current, created_at"
    )
    with raw.copy(f"COPY annotation_rating ({rating_cols}) FROM STDIN") as copy:
        for c in range(CLIPS):
            for j in range(RATINGS_PER_CLIP):
                annotator = user_ids[(c * 7 + j * 11) % ANNOTATORS]
                base = 1 + (c + j) % 5
                scores = [min(5, max(1, base + ((c * (d + 1) + j) % 3) - 1)) for d in range(6)]
                copy.write_row(
                    (
                        c + 1,
                        annotator,
                        *scores,
                        5.0 + (c + j) % 40,
                        uuid.UUID(int=c * 10 + j),
                        True,
                        "2026-01-01T00:00:00Z",
                    )
                )
    with connection.cursor() as cursor:
        for table in ("annotation_condition", "annotation_clip", "annotation_rating"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        cursor.execute("ANALYZE")
    return [r.pk for r in rounds]


def timed(label: str, fn, *, memory: bool = False):
    """Time one run; with ``memory`` run it again under tracemalloc for the Python peak."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = None
    if memory:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    mem = f"  peak {peak:6.2f} MiB" if peak is not None else ""
    print(f"{label:<48} {seconds * 1000:9.1f} ms{mem}")
    return seconds, peak, result


def copy_baseline(path: Path, params: dict) -> int:
    with connection.cursor() as cursor, path.open("wb") as out:
        with cursor.cursor.copy(f"COPY ({exports.label_rows_sql()}) TO STDOUT", params) as copy:
            for chunk in copy:
                out.write(chunk)
        return cursor.cursor.rowcount


def main() -> None:
    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    round_ids = seed()
    print(
        f"seeded {CLIPS} clips, {CLIPS * RATINGS_PER_CLIP} ratings in {time.perf_counter() - t0:.1f} s "
        f"(db {os.environ['LABELHUB_DB_NAME']})\n"
    )

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE annotation_cliplabel")
    timed("(a) recompute_all_labels, from empty", lambda: recompute_all_labels())
    _s, _p, report = timed(
        "(a) recompute_all_labels, check (no change)", lambda: recompute_all_labels()
    )
    assert report.ok and report.clips == CLIPS, report

    _s, _p, arrays = timed("(b) load 90k ratings into arrays", lambda: load_rating_arrays())
    timed(
        "(b) alpha interval x6 (from arrays)", lambda: alpha_from_arrays(arrays, level="interval")
    )
    timed("(b) alpha ordinal x6 (from arrays)", lambda: alpha_from_arrays(arrays, level="ordinal"))
    timed(
        "(b) load + alpha interval x6, total",
        lambda: alpha_from_arrays(load_rating_arrays(), level="interval"),
    )

    print()
    for label, ids in (("1 round, 10k clips", round_ids[:1]), ("3 rounds, 30k clips", round_ids)):
        params = exports.ExportParams(ids, 0.1, 0, False)
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            _s, _p, sql_params = timed(
                f"[{label}] grouped split (conditions)",
                lambda p=params: exports.compute_placements(p),
                memory=True,
            )
            base, _p, rows = timed(
                f"[{label}] baseline COPY TO STDOUT",
                lambda d=directory, sp=sql_params: copy_baseline(d / "baseline.txt", sp),
                memory=True,
            )
            for fmt in exports.FORMATS:
                writer = exports._WRITERS[fmt]
                seconds, _peak, n = timed(
                    f"[{label}] {fmt}",
                    lambda w=writer, f=fmt, d=directory, sp=sql_params: w(
                        d / f"labels.{f}",
                        exports.label_rows_sql(),
                        sp,
                        exports.LABEL_COLUMNS,
                    ),
                    memory=True,
                )
                assert n == rows, (fmt, n, rows)
                size = (directory / f"labels.{fmt}").stat().st_size / 2**20
                print(f"{'':<48} {seconds / base:9.2f} x COPY  {n} rows, {size:.1f} MiB")
        print()
    timed(
        "full create_snapshot (3 formats + card, 30k)",
        lambda: create_snapshot(round_ids=None, test_fraction=0.1, seed=0),
    )


if __name__ == "__main__":
    main()
