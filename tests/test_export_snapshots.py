"""Export snapshots: files re-read with pandas, pyarrow and datasets match the database."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction

from annotation.models import ClipLabel, ExportSnapshot, Rating
from annotation.selectors.exports import READ_BATCH_ROWS, iter_snapshot_rows, open_snapshot_file
from annotation.services.exports import create_snapshot, request_snapshot_build
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate

ROW_KEYS = [
    "clip_id",
    "round_id",
    "round",
    "condition_id",
    "video",
    "original",
    "condition_image",
    "character_reference",
    "character_id",
    "character",
    "prompt",
    "source_kind",
    "source_name",
    "split",
    "group",
    *[f"{k}_{s}" for k in DIMENSION_KEYS for s in ("mean", "std", "count")],
    "overall",
    "rating_count",
]


def iter_snapshot_ratings(snapshot: ExportSnapshot):
    """Yield the pseudonymised raw ratings of a snapshot exported with ``include_ratings``."""
    with open_snapshot_file(snapshot, "ratings_parquet") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=READ_BATCH_ROWS):
            yield from batch.to_pylist()


@pytest.fixture
def labelled(db):
    r1, r2 = make_round("round one"), make_round("round two")
    raters = [make_user(f"rater{i}", "annotator") for i in range(3)]
    conditions = [
        make_condition(f"img{i}", f'a girl waves, take {i}, "quoted", comma') for i in range(5)
    ]
    conditions.append(make_condition("img5b", "two lines:\nback\\slash, tab\there, ünïcode"))
    # Condition 7 shares condition 0's image; condition 8 shares condition 1's prompt.
    conditions.append(make_condition("img0", "another prompt"))
    conditions.append(
        make_condition("img7", conditions[1].prompt, character_reference="characters/c7.png")
    )
    clips = []
    for i, condition in enumerate(conditions):
        for s, source in enumerate(("ground_truth", "hailuo")):
            clip = make_clip(r1 if i % 2 else r2, condition, source)
            for j, rater in enumerate(raters[: 1 + (i + s) % 3]):
                rate(clip, rater, [1 + (i + j + k) % 5 for k in range(6)], seconds=5 + j)
            clips.append(clip)
    make_clip(r1, conditions[0], "vidu")  # never rated: not exported
    pulled = make_clip(r1, conditions[2], "cogvideox")
    rate(pulled, raters[0], 3)
    pulled.status = "pulled"  # pulled as broken after its rating: not exported
    pulled.save(update_fields=["status"])
    return {"rounds": (r1, r2), "clips": clips, "raters": raters, "pulled": pulled}


def _db_rows():
    labels = ClipLabel.objects.select_related("clip__condition", "clip__round").exclude(
        clip__status="pulled"
    )
    return {label.clip_id: label for label in labels}


def _check_frame(df: pd.DataFrame, labels: dict) -> None:
    assert list(df.columns) == ROW_KEYS
    assert sorted(df["clip_id"]) == sorted(labels)
    assert list(df["clip_id"]) == sorted(df["clip_id"])  # ordered by clip id
    for row in df.to_dict("records"):
        label = labels[row["clip_id"]]
        clip = label.clip
        assert row["round"] == clip.round.name and row["round_id"] == clip.round_id
        assert row["video"] == clip.video.name and row["original"] == clip.original.name
        assert row["condition_image"] == clip.condition.image.name
        assert (row["character_reference"] or "") == clip.condition.character_reference.name
        assert row["prompt"] == clip.condition.prompt
        assert row["source_name"] == clip.source_name and row["source_kind"] == clip.source_kind
        for key in DIMENSION_KEYS:
            assert row[f"{key}_mean"] == pytest.approx(getattr(label, f"{key}_mean"), abs=1e-12)
            assert row[f"{key}_std"] == pytest.approx(getattr(label, f"{key}_std"), abs=1e-12)
            assert row[f"{key}_count"] == label.count
        assert row["overall"] == pytest.approx(label.overall, abs=1e-12)
        assert row["rating_count"] == label.count


def test_snapshot_files_match_the_database(labelled, lead, tmp_path):
    import datasets

    snapshot = create_snapshot(
        round_ids=None, test_fraction=0.3, seed=1, include_ratings=True, created_by=lead
    )
    assert snapshot.status == ExportSnapshot.Status.READY and len(snapshot.content_hash) == 64
    labels = _db_rows()
    assert snapshot.row_counts["clips"] == len(labels) == 16
    assert snapshot.row_counts["train"] + snapshot.row_counts["test"] == 16
    assert 0 < snapshot.row_counts["test"] < 16
    assert snapshot.row_counts["ratings"] == Rating.objects.exclude(clip__status="pulled").count()

    paths = {kind: default_storage.path(entry["name"]) for kind, entry in snapshot.files.items()}
    assert all(
        entry["name"].startswith(f"exports/{snapshot.pk}/") for entry in snapshot.files.values()
    )
    parquet = pq.read_table(paths["labels_parquet"]).to_pandas()
    _check_frame(parquet, labels)
    jsonl = pd.read_json(paths["labels_jsonl"], lines=True, dtype=False)
    _check_frame(jsonl, labels)
    csv = pd.read_csv(paths["labels_csv"], keep_default_na=False)
    _check_frame(csv, labels)
    with open(paths["labels_jsonl"], encoding="utf-8") as fh:
        assert list(json.loads(fh.readline())) == ROW_KEYS

    ds = datasets.load_dataset(
        "parquet", data_files=paths["labels_parquet"], cache_dir=str(tmp_path / "hf")
    )["train"]
    assert ds.num_rows == 16 and ds.column_names == ROW_KEYS
    assert ds.to_pandas().equals(parquet)

    # The split in the files: grouped, so no image and no prompt on both sides.
    by_split = {s: parquet[parquet["split"] == s] for s in ("train", "test")}
    for column in ("condition_image", "prompt"):
        assert not set(by_split["train"][column]) & set(by_split["test"][column])
    assert len(list(iter_snapshot_rows(snapshot, split="test"))) == snapshot.row_counts["test"]
    assert [r["clip_id"] for r in iter_snapshot_rows(snapshot)] == list(parquet["clip_id"])

    # Raw ratings: pseudonymous annotators, scores as stored.
    ratings = list(iter_snapshot_ratings(snapshot))
    assert len(ratings) == snapshot.row_counts["ratings"]
    pseudonyms = {r["annotator"] for r in ratings}
    assert len(pseudonyms) == 3
    for rater in labelled["raters"]:
        assert str(rater.pk) not in pseudonyms and rater.username not in pseudonyms
    stored = {
        (r.clip_id, tuple(r.scores().values()))
        for r in Rating.objects.exclude(clip__status="pulled")
    }
    assert {(r["clip_id"], tuple(r[k] for k in DIMENSION_KEYS)) for r in ratings} == stored

    card = open(paths["card"], encoding="utf-8").read()
    assert "test 0" not in card and "load_dataset" in card


def test_snapshots_are_reproducible_and_immutable(labelled):
    r1, _r2 = labelled["rounds"]
    first = create_snapshot(round_ids=[r1.pk], test_fraction=0.5, seed=4)
    again = create_snapshot(round_ids=[r1.pk], test_fraction=0.5, seed=4)
    assert first.pk != again.pk
    assert first.content_hash == again.content_hash
    assert (
        first.row_counts
        == again.row_counts
        == {
            "clips": 8,
            "train": first.row_counts["train"],
            "test": first.row_counts["test"],
            # no pairwise tasks here: the judgement file is written, empty, with zero counts
            "judgements": 0,
            "judged_pairs_train": 0,
            "judged_pairs_test": 0,
            "judged_pairs_cross_split": 0,
            "judged_pairs_not_exported": 0,
        }
    )
    assert {c["sha256"] for c in first.files.values()} == {
        c["sha256"] for c in again.files.values()
    }
    other_seeds = {
        create_snapshot(round_ids=[r1.pk], test_fraction=0.5, seed=s).content_hash
        for s in (5, 6, 7)
    }
    assert other_seeds - {first.content_hash}  # a different seed gives a different split

    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        ExportSnapshot.objects.filter(pk=first.pk).update(params={"seed": 99})
    first.refresh_from_db()
    assert first.params["seed"] == 4


def test_snapshot_task_runs_after_commit(labelled, lead, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = request_snapshot_build(
            round_ids=None, test_fraction=0.2, seed=0, created_by=lead
        )
        assert snapshot.status == ExportSnapshot.Status.PENDING
    snapshot.refresh_from_db()
    assert snapshot.status == ExportSnapshot.Status.READY
    assert snapshot.row_counts["clips"] == 16
    assert "ratings_parquet" not in snapshot.files
