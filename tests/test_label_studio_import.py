"""Label Studio projects come in: an export shaped like Label Studio's documented JSON export (video
tasks with local-storage URLs, Rating results from several annotators, Pairwise and Choices
results) imports clips through the manifest ingest path, ratings on our six dimensions and A/B
judgements; a URL outside the import roots, an unknown task shape and a rating outside 1-5 are
their rows' errors while the rest comes in; a second import adds nothing."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from PIL import Image

from annotation.models import Clip, ClipLabel, PairwiseJudgement, PairwiseTask, Rating, Round
from annotation.services.label_studio import MAPPING_EXAMPLE
from annotation.services.labels import recompute_all_labels
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user, render_test_video

LS_RATING_NAMES = list(MAPPING_EXAMPLE["ratings"])  # smoothness, motion, appeal, ...


def local_files_url(path: Path) -> str:
    """Label Studio's local-storage URL for a file under its document root (our import root)."""
    relative = path.resolve().relative_to(settings.LABELHUB_IMPORT_ROOTS[0])
    return f"/data/local-files/?d={relative.as_posix()}"


def rating_result(values: list[int]) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "type": "rating",
            "from_name": name,
            "to_name": "video",
            "origin": "manual",
            "value": {"rating": value},
        }
        for i, (name, value) in enumerate(zip(LS_RATING_NAMES, values, strict=True))
    ]


def annotation(ann_id: int, email: str, result: list[dict], lead_time: float = 21.5) -> dict:
    return {
        "id": ann_id,
        "completed_by": {"id": ann_id % 7, "email": email, "first_name": "", "last_name": ""},
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-11-02T10:00:00.000000Z",
        "updated_at": "2026-11-02T10:00:30.000000Z",
        "lead_time": lead_time,
        "prediction": {},
        "result_count": len(result),
        "task": 0,
        "project": 3,
    }


def write_export(tmp_path: Path) -> Path:
    images = []
    for c in range(2):
        image = tmp_path / f"first-{c}.png"
        Image.new("RGB", (48, 32), (80 * c, 120, 200)).save(image)
        images.append(image)
    videos = {
        (c, source): render_test_video(
            tmp_path / f"ls-{c}-{source}.mp4",
            seconds=1.0 + 0.25 * c,
            size="32x32",
            source="testsrc2" if source == "ground_truth" else "smptebars",
        )
        for c in range(2)
        for source in ("ground_truth", "hailuo")
    }
    tasks = []
    ann = 100
    for (c, source), video in videos.items():
        ann += 2
        tasks.append(
            {
                "id": len(tasks) + 1,
                "data": {
                    "video": local_files_url(video),
                    "prompt": f"a girl waves in scene {c}",
                    "image": local_files_url(images[c]),
                    "source": source,
                },
                "annotations": [
                    annotation(ann, "Rater.One@Studio.example", rating_result([4, 3, 4, 5, 4, 3])),
                    annotation(ann + 1, "rater2@studio.example", rating_result([2, 2, 3, 3, 2, 1])),
                ],
                "predictions": [],
                "meta": {},
                "created_at": "2026-11-01T09:00:00.000000Z",
                "project": 3,
            }
        )
    # A rating outside 1-5 from one annotator: that annotation's error; the other one counts.
    tasks[0]["annotations"][1]["result"][2]["value"]["rating"] = 7
    pair_data = [
        {
            "video_a": local_files_url(videos[(c, "ground_truth")]),
            "video_b": local_files_url(videos[(c, "hailuo")]),
            "prompt": f"a girl waves in scene {c}",
            "image": local_files_url(images[c]),
        }
        for c in range(2)
    ]
    pairwise = {"type": "pairwise", "from_name": "pw", "to_name": ["video_a", "video_b"]}
    tasks += [
        {
            "id": 10,
            "data": pair_data[0],
            "annotations": [
                annotation(201, "rater2@studio.example", [{**pairwise, "value": {"selected": "left"}}]),
                annotation(202, "judge3@studio.example", [{**pairwise, "value": {"selected": "right"}}]),
            ],
        },
        {
            "id": 11,
            "data": pair_data[1],
            "annotations": [
                annotation(
                    203,
                    "judge3@studio.example",
                    [{"type": "choices", "from_name": "preference", "to_name": "video_a",
                      "value": {"choices": ["Tie"]}}],
                ),
            ],
        },
        {"id": 20, "data": {"video": "https://cdn.example.com/clip.mp4", "prompt": "p"}},
        {"id": 21, "data": {"video": "/data/local-files/?d=../../../etc/passwd", "prompt": "p"}},
        {"id": 22, "data": {"text": "a text task from another project"}},
    ]  # fmt: skip
    path = tmp_path / "project-3-at-2026-11-02.json"
    path.write_text(json.dumps(tasks, indent=1))
    return path


def run_import(path: Path, tmp_path: Path) -> str:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING_EXAMPLE))
    out = io.StringIO()
    call_command(
        "import_label_studio", str(path), round_name="from-label-studio", mapping=str(mapping),
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_label_studio_export_imports_clips_ratings_and_judgements_once(tmp_path):
    existing = make_user("rater-one", "annotator")
    existing.email = "rater.one@studio.example"
    existing.save()
    export = write_export(tmp_path)

    out = run_import(export, tmp_path)
    round_ = Round.objects.get(name="from-label-studio")
    clips = Clip.objects.filter(round=round_, status=Clip.Status.READY)
    assert clips.count() == 4
    assert set(clips.values_list("source_name", flat=True)) == {"ground_truth", "hailuo"}
    assert clips.values("condition").distinct().count() == 2  # the mapped first frame + prompt

    # Errors name their task; everything else came in.
    assert (
        "task 20: 'video' https://cdn.example.com/clip.mp4 is a URL outside the import roots" in out
    )
    assert "task 21: 'video' /data/local-files/?d=../../../etc/passwd is outside the allowed" in out
    assert "task 22: unknown task shape" in out
    assert "task 1: rating 'appeal' = 7 is not within 1-5" in out

    # Ratings: 4 clips x 2 annotators, less the one out of range; matched and created by e-mail.
    assert Rating.objects.filter(clip__round=round_).count() == 7
    assert Rating.objects.filter(annotator=existing).count() == 4
    created = User.objects.get(email="rater2@studio.example")
    assert not created.is_active and not created.has_usable_password()
    assert created.groups.filter(name="annotator").exists()
    rating = Rating.objects.filter(annotator=existing).order_by("clip_id").first()
    assert [getattr(rating, k) for k in DIMENSION_KEYS] == [4, 3, 4, 5, 4, 3]
    assert rating.seconds_spent == 21.5
    assert recompute_all_labels(dry_run=True).ok  # labels updated with the ratings
    assert ClipLabel.objects.filter(clip__round=round_, count__gt=0).count() == 4

    # Judgements: left = A, right = B, the "Tie" choice a tie; judges matched by e-mail.
    judgements = PairwiseJudgement.objects.filter(task__clip_a__round=round_)
    assert sorted(judgements.values_list("judge__email", "choice")) == [
        ("judge3@studio.example", "b"),
        ("judge3@studio.example", "tie"),
        ("rater2@studio.example", "a"),
    ]
    task = PairwiseTask.objects.get(judgements__choice="a")
    assert task.clip_a.source_name == "ground_truth" and task.judgement_count == 2

    before = (
        Clip.objects.count(),
        Rating.objects.count(),
        PairwiseJudgement.objects.count(),
        PairwiseTask.objects.count(),
        User.objects.count(),
    )
    out = run_import(export, tmp_path)
    assert "0 clip(s) queued for ingest" in out and "0 rating(s) and 0 judgement(s) added" in out
    assert (
        Clip.objects.count(),
        Rating.objects.count(),
        PairwiseJudgement.objects.count(),
        PairwiseTask.objects.count(),
        User.objects.count(),
    ) == before


@pytest.mark.django_db
def test_a_mapping_without_all_six_dimensions_is_refused(tmp_path):
    from django.core.management import CommandError

    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"prompt": "prompt", "ratings": {"smoothness": "visual_smoothness"}})
    )
    (tmp_path / "export.json").write_text("[]")
    with pytest.raises(CommandError, match="all six dimensions"):
        call_command(
            "import_label_studio",
            str(tmp_path / "export.json"),
            round_name="x",
            mapping=str(mapping),
        )


@pytest.mark.django_db(transaction=True)
def test_the_lead_import_page_takes_the_export_and_shows_each_tasks_error(tmp_path, lead):
    from django.test import Client
    from django.urls import reverse

    export = write_export(tmp_path)
    client = Client()
    client.force_login(lead)
    page = client.get(reverse("annotation:import"))
    assert reverse("annotation:import_label_studio") in page.content.decode()
    with export.open("rb") as handle:
        response = client.post(
            reverse("annotation:import_label_studio"), {"export": handle, "round": "ls-page"}
        )
    body = response.content.decode()
    assert response.status_code == 200
    assert "7 rating(s) and 3 judgement(s) added" in body
    assert "task 22: unknown task shape" in body
    assert Rating.objects.filter(clip__round__name="ls-page").count() == 7
    client.force_login(make_user("just-a-rater", "annotator"))
    assert client.get(reverse("annotation:import_label_studio")).status_code in (302, 403)
