"""Ingest of good and bad files through the real ffmpeg: good rows import, bad rows report and leave nothing."""

import shutil
import subprocess

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from annotation.models import Clip, Condition, ImportBatch, ImportRow
from annotation.services import ingest
from tests.factories import make_round, write_manifest

pytestmark = pytest.mark.django_db(transaction=True)


def _run_import(tmp_path, rows, **kwargs) -> ImportBatch:
    manifest = write_manifest(tmp_path / "manifest.jsonl", rows)
    return ingest.import_manifest_file(path=manifest, **kwargs)


def _storage_files() -> set[str]:
    root = default_storage.location
    files = set()
    for sub in ("originals", "clips", "posters", "conditions", "characters"):
        d = default_storage.path(sub)
        if default_storage.exists(sub):
            files |= {f"{sub}/{n}" for n in default_storage.listdir(d)[1]}
    return files if root else set()


def test_good_clip_is_probed_transcoded_and_gets_third_frame_condition(tmp_path, video_factory):
    make_round("r1")
    video = video_factory("good.mov", seconds=1.0, fps=10, size="96x64")
    batch = _run_import(
        tmp_path,
        [{"video": str(video), "prompt": "a girl waves", "source": "hailuo", "round": "r1"}],
    )
    row = batch.rows.get()
    assert row.status == ImportRow.Status.OK, row.message
    clip = Clip.objects.get(pk=row.clip_id)
    assert (clip.frames, clip.width, clip.height) == (10, 96, 64)
    assert clip.fps == pytest.approx(10)
    assert clip.source_kind == Clip.SourceKind.EXTERNAL and clip.source_name == "hailuo"
    assert clip.status == Clip.Status.READY and clip.target_ratings == 3
    # Browser MP4: H.264, yuv420p, constant frame rate, moov atom before mdat (faststart).
    path = default_storage.path(clip.video.name)
    probe = (
        subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,pix_fmt,r_frame_rate,avg_frame_rate",
                "-of",
                "csv=p=0",
                path,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(",")
    )
    assert probe[0] == "h264" and probe[1] == "yuv420p" and probe[2] == probe[3]
    data = open(path, "rb").read()
    assert data.index(b"moov") < data.index(b"mdat")
    assert default_storage.exists(clip.poster.name)
    assert clip.condition.image.name.endswith(".png") and default_storage.exists(
        clip.condition.image.name
    )
    assert ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE


def test_bad_rows_are_reported_and_leave_nothing_behind(tmp_path, video_factory, settings):
    make_round("r1")
    good = video_factory("good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    image = tmp_path / "image.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48",
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "png",
            str(image),
        ],
        check=True,
    )
    audio = tmp_path / "audio.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
            str(audio),
        ],
        check=True,
    )
    outside = tmp_path.parent / "outside-root.mp4"
    settings.LABELHUB_IMPORT_ROOTS = [tmp_path.resolve()]
    settings.LABELHUB_ARTIFACTS_ROOT = tmp_path / "artifacts"
    shutil.copy(good, outside)
    rows = [
        {"video": str(good), "prompt": "ok", "round": "r1"},
        {"video": str(good), "prompt": "again", "round": "r1"},
        {"video": str(tmp_path / "missing.mp4"), "prompt": "x", "round": "r1"},
        {"video": str(empty), "prompt": "x", "round": "r1"},
        {"video": str(truncated), "prompt": "x", "round": "r1"},
        {"video": str(image), "prompt": "x", "round": "r1"},
        {"video": str(audio), "prompt": "x", "round": "r1"},
        {"video": str(outside), "prompt": "x", "round": "r1"},
        {"video": str(good), "prompt": "x", "round": "nope"},
        {"video": str(good), "prompt": "x", "round": "r1", "colour": "red"},
        {"video": str(good), "round": "r1"},
    ]
    batch = _run_import(tmp_path, rows)
    report = {r.line: r for r in ImportRow.objects.filter(batch=batch)}
    assert report[1].status == ImportRow.Status.OK, report[1].message
    expected = {
        2: "duplicate",
        3: "not found",
        4: "empty",
        5: "",
        6: "",
        7: "no video stream",
        8: "outside the allowed",
        9: "unknown round",
        10: "unknown field",
        11: "missing required field 'prompt'",
    }
    for line, text in expected.items():
        assert report[line].status == ImportRow.Status.ERROR, (line, report[line].message)
        assert text in report[line].message, (line, report[line].message)
    assert report[5].message and report[6].message
    # Exactly one clip and one condition exist, and storage holds only their files.
    clip = Clip.objects.get()
    assert Condition.objects.count() == 1
    assert _storage_files() == {
        clip.original.name,
        clip.video.name,
        clip.poster.name,
        clip.condition.image.name,
    }


def test_reimport_is_idempotent_by_content_hash(tmp_path, video_factory):
    make_round("r1")
    video = video_factory()
    _run_import(tmp_path, [{"video": str(video), "prompt": "p", "round": "r1"}])
    second = _run_import(tmp_path, [{"video": str(video), "prompt": "p", "round": "r1"}])
    assert "duplicate" in second.rows.get().message
    assert Clip.objects.count() == 1
    # A redelivered task for a finished row does nothing.
    row = ImportRow.objects.filter(status=ImportRow.Status.OK).get()
    ingest.ingest_import_row(row.pk)
    assert Clip.objects.count() == 1


def test_csv_manifest_with_first_frame_and_character_reference(tmp_path, video_factory):
    make_round("r1")
    video = video_factory()
    still = tmp_path / "first.png"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=64x48",
            "-frames:v",
            "1",
            str(still),
        ],
        check=True,
    )
    (tmp_path / "m.csv").write_text(
        "video,prompt,first_frame,character_reference,source,round\n"
        f"{video.name},a red scene,{still.name},{still.name},ground_truth,r1\n"
    )
    batch = ingest.import_manifest_file(path=tmp_path / "m.csv")
    row = batch.rows.get()
    assert row.status == ImportRow.Status.OK, row.message
    clip = Clip.objects.get()
    assert clip.source_kind == Clip.SourceKind.GROUND_TRUTH
    # Images are re-encoded to PNG at ingest: same pixels, our own encoding.
    with Image.open(default_storage.open(clip.condition.image.name)) as stored:
        assert stored.format == "PNG" and stored.size == (64, 48)
        red, green, blue = stored.convert("RGB").getpixel((10, 10))
        assert red > 240 and green < 16 and blue < 16
    assert clip.condition.character_reference.name.endswith(".png")


def test_import_clips_command_prints_report(tmp_path, video_factory, capsys):
    video = video_factory()
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"video": str(video), "prompt": "p"}, {"video": "nope.mp4", "prompt": "p"}],
    )
    call_command("import_clips", str(manifest), "--round", "demo", "--create-round")
    out = capsys.readouterr().out
    assert "1 imported" in out and "1 error" in out and "not found" in out
    assert Clip.objects.filter(round__name="demo").count() == 1
