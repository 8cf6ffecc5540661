"""Hostile files and manifests fail safe (issue 10): real ffmpeg, real Postgres, no mocks.

A playlist named clip.mp4, an SVG with a script, a decompression-bomb PNG, out-of-range and
non-integer seeds, NUL bytes and oversized fields each end as their own row's error, quickly, and
leave nothing in storage; the good rows of the same manifest import.
"""

import hashlib
import os
import struct
import subprocess
import time
import zlib
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from annotation import media
from annotation.management.commands.import_clips import Command as ImportClipsCommand
from annotation.models import Clip, Condition, ImportBatch, ImportRow
from annotation.selectors.imports import batch_report
from annotation.services import ingest
from labelhub import storage
from tests.factories import count_decoded_frames, make_round, write_manifest

pytestmark = pytest.mark.django_db(transaction=True)


def stored_objects() -> set[str]:
    return {o.name for o in storage.list_objects((*storage.INGEST_FOLDERS, storage.TEMP_FOLDER))}


def referenced_objects() -> set[str]:
    names = set()
    for clip in Clip.objects.select_related("condition"):
        names |= {clip.original.name, clip.video.name, clip.poster.name, clip.condition.image.name}
        if clip.condition.character_reference:
            names.add(clip.condition.character_reference.name)
    return names


def write_bomb_png(path, side: int = 14000) -> None:
    """A real, fully valid side x side PNG (all black); it compresses to well under a megabyte."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def write_png(path, size=(32, 24), colour=(200, 30, 30)) -> None:
    Image.new("RGB", size, colour).save(path, format="PNG")


@pytest.fixture
def roots(settings, tmp_path):
    """Import roots = tmp_path/import only, so files elsewhere in tmp_path are outside them."""
    root = tmp_path / "import"
    root.mkdir()
    settings.LABELHUB_IMPORT_ROOTS = [root.resolve()]
    settings.LABELHUB_ARTIFACTS_ROOT = tmp_path / "artifacts"
    return root


def test_hostile_manifest_reports_every_bad_row_and_leaves_nothing(
    roots, tmp_path, video_factory, settings
):
    settings.LABELHUB_FFMPEG_TIMEOUT_SECONDS = 20
    make_round("r1")
    good = video_factory("import/good.mp4")
    other_good = video_factory("import/other.mp4", seconds=1.5)
    for_svg = video_factory("import/svg.mp4", seconds=1.25)
    for_bomb = video_factory("import/bomb.mp4", seconds=0.75)
    outside = video_factory("outside/secret.mp4")  # a playlist must never make us read this
    playlist = roots / "clip.mp4"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{outside}\n#EXT-X-ENDLIST\n"
    )
    concat = roots / "concat.mp4"
    concat.write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    svg = roots / "frame.png"
    svg.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
        "<script>fetch('/api/lead/')</script><rect width='64' height='48'/></svg>"
    )
    bomb = roots / "bomb.png"
    write_bomb_png(bomb)
    reference = roots / "reference.webp"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(reference, format="WEBP")
    rows = [
        {"video": str(good), "prompt": "fine", "round": "r1", "seed": "42"},  # 1 ok
        {"video": str(playlist), "prompt": "p", "round": "r1"},
        {"video": str(concat), "prompt": "p", "round": "r1"},
        {"video": str(for_svg), "prompt": "svg", "round": "r1", "first_frame": str(svg)},
        {"video": str(for_bomb), "prompt": "bomb", "round": "r1", "first_frame": str(bomb)},
        {"video": str(good), "prompt": "p", "round": "r1", "seed": 2**63},
        {"video": str(good), "prompt": "p", "round": "r1", "seed": "-9223372036854775809"},
        {"video": str(good), "prompt": "p", "round": "r1", "seed": "²"},
        {"video": str(good), "prompt": "p", "round": "r1", "seed": 1.5},
        {"video": str(good), "prompt": "p", "round": "r1", "seed": True},
        {"video": str(good), "prompt": "nul\x00byte", "round": "r1"},
        {"video": str(good) + "\x00.txt", "prompt": "p", "round": "r1"},
        {"video": str(good), "prompt": "x" * 4001, "round": "r1"},
        {"video": ["a list"], "prompt": "p", "round": "r1"},
        {"video": str(good), "prompt": "p", "round": {"name": "r1"}},
        {"video": str(good), "prompt": "p", "round": "r1", "policy_checkpoint_id": "abc"},
        {"video": str(outside), "prompt": "p", "round": "r1"},
        {  # 18 ok: a WebP character reference, re-encoded to PNG
            "video": str(other_good),
            "prompt": "with reference",
            "round": "r1",
            "character_reference": str(reference),
        },
    ]
    manifest = write_manifest(tmp_path / "hostile.jsonl", rows)
    started = time.monotonic()
    batch = ingest.import_manifest_file(path=manifest)
    elapsed = time.monotonic() - started

    report = {r.line: r for r in ImportRow.objects.filter(batch=batch)}
    expected_errors = {
        2: "HLS playlist",
        3: "concat list",
        4: "PNG, JPEG or WebP",
        5: "over the limit",
        6: "out of range",
        7: "out of range",
        8: "must be an integer",
        9: "must be an integer",
        10: "must be an integer",
        11: "NUL byte",
        12: "NUL byte",
        13: "over the limit of 4000",
        14: "must be a string",
        15: "must be a string",
        16: "must be an integer",
        17: "outside the allowed import roots",
    }
    for line, text in expected_errors.items():
        assert report[line].status == ImportRow.Status.ERROR, (line, report[line].message)
        assert text in report[line].message, (line, report[line].message)
    assert report[1].status == ImportRow.Status.OK, report[1].message
    assert report[18].status == ImportRow.Status.OK, report[18].message
    assert "\x00" not in report[12].video_path
    assert ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE
    assert elapsed < 60, elapsed
    # Storage holds exactly the two good clips' files; the SVG and the bomb left nothing.
    assert Clip.objects.count() == 2
    assert stored_objects() == referenced_objects()
    with_reference = Clip.objects.get(pk=report[18].clip_id).condition
    with Image.open(default_storage.open(with_reference.character_reference.name)) as image:
        assert image.format == "PNG" and image.size == (40, 30)
    assert Clip.objects.get(pk=report[1].clip_id).seed == 42


def test_a_playlist_never_reaches_a_demuxer_even_without_the_sniff(tmp_path):
    """Straight into ffmpeg: the hls demuxer is not on the allow-list, so the listed FIFO is never
    opened (opening it would block until the timeout)."""
    fifo = tmp_path / "outside.ts"
    os.mkfifo(fifo)
    playlist = tmp_path / "clip.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{fifo}\n#EXT-X-ENDLIST\n")
    # Opening the FIFO would block until the timeout stops ffmpeg: refused for another reason,
    # the playlist was never followed (no clock involved, so a busy machine cannot flake it).
    with pytest.raises(media.MediaError) as caught:
        media.transcode_for_browser(playlist, tmp_path / "out.mp4", fps=8, timeout=10)
    assert "took longer" not in str(caught.value)
    with pytest.raises(media.MediaError, match="HLS playlist"):
        media.probe_video(playlist, ingest.video_limits())


def test_a_hung_ffmpeg_child_is_killed_at_the_timeout(tmp_path):
    fifo = tmp_path / "never-written.mkv"
    os.mkfifo(fifo)  # reading blocks forever: the child must be killed, not waited on
    with pytest.raises(media.MediaError, match="took longer than 2s and was stopped"):
        media.extract_frame(fifo, tmp_path / "x.png", index=0, timeout=2)
    # Stopped means gone: no ffmpeg child still holds the FIFO.
    leftover = subprocess.run(["pgrep", "-f", str(fifo)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_csv_fields_of_any_size_are_row_errors(roots, tmp_path, video_factory):
    make_round("r1")
    good = video_factory("import/good.mp4")
    huge = "y" * 300_000  # over csv's default 128 KiB field limit
    (tmp_path / "m.csv").write_text(
        f"video,prompt,round,seed\n{good},{huge},r1,1\n{good},ok,r1,99999999999999999999999\n"
        f"{good},ok,r1,7,extra\n{good},ok,r1,7\n"
    )
    batch = ingest.import_manifest_file(path=tmp_path / "m.csv")
    rows = list(batch.rows.order_by("line"))
    assert [r.status for r in rows] == ["error", "error", "error", "ok"], [r.message for r in rows]
    assert "over the limit of 4000" in rows[0].message
    assert "out of range" in rows[1].message
    assert "more values than header columns" in rows[2].message


def test_unexpected_error_in_a_queued_row_ends_it_as_error_and_cleans_up(roots, video_factory):
    """A row queued before validation existed (seed beyond bigint) raises DataError at insert."""
    make_round("r1")
    good = video_factory("import/good.mp4")
    other = video_factory("import/other.mp4", seconds=1.5)
    manifest = write_manifest(
        roots / "m.jsonl",
        [{"video": str(good), "prompt": "a", "round": "r1"}],
    )
    batch = ingest.import_manifest_file(path=manifest)
    assert batch.rows.get().status == ImportRow.Status.OK
    before = stored_objects()
    round_id = batch.rows.get().payload["round_id"]
    bad_batch = ImportBatch.objects.create(manifest_name="legacy")
    row = ImportRow.objects.create(
        batch=bad_batch,
        line=1,
        status=ImportRow.Status.QUEUED,
        payload={
            "video": str(other),
            "video_sha256": "",
            "prompt": "b",
            "first_frame": "",
            "character_reference": "",
            "round_id": round_id,
            "source": "x",
            "seed": 2**70,
            "policy_checkpoint_id": None,
        },
    )
    ingest.ingest_import_row(row.pk)
    row.refresh_from_db()
    assert row.status == ImportRow.Status.ERROR and "DataError" in row.message, row.message
    assert row.written == []
    assert ImportBatch.objects.get(pk=bad_batch.pk).status == ImportBatch.Status.DONE
    assert stored_objects() == before  # everything this row wrote is gone again
    ingest.ingest_import_row(row.pk)  # a duplicate delivery changes nothing
    assert ImportRow.objects.get(pk=row.pk).message == row.message


def test_a_row_held_by_a_live_worker_is_left_alone_and_a_stale_one_is_taken_over(
    roots, video_factory, settings
):
    make_round("r1")
    batch = ImportBatch.objects.create(manifest_name="m")
    good = video_factory("import/good.mp4")
    payload = ingest.validate_row(
        {"video": str(good), "prompt": "p", "round": "r1"},
        base_dir=None,
        default_round=None,
        rounds={},
        seen={},
        line=1,
    )
    now = timezone.now()
    row = ImportRow.objects.create(
        batch=batch,
        line=1,
        status=ImportRow.Status.PROCESSING,
        payload=payload,
        attempts=1,
        claimed_at=now,
        heartbeat_at=now,
    )
    ingest.ingest_import_row(row.pk)  # redelivered while its worker is alive: no-op
    row.refresh_from_db()
    assert row.status == ImportRow.Status.PROCESSING and row.attempts == 1
    assert not Clip.objects.exists()
    # The worker died: its heartbeat goes stale and the sweeper requeues (eagerly: runs) the row.
    ImportRow.objects.filter(pk=row.pk).update(heartbeat_at=now - timedelta(minutes=5))
    counts = ingest.sweep_stuck_imports()
    assert counts["requeued"] == 1
    row.refresh_from_db()
    assert row.status == ImportRow.Status.OK and row.attempts == 2
    assert batch_report(batch)["retried"] == 1
    assert ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE


def test_a_row_that_keeps_killing_workers_is_failed_and_its_files_removed(roots, settings):
    settings.LABELHUB_IMPORT_MAX_ATTEMPTS = 2
    make_round("r1")
    batch = ImportBatch.objects.create(manifest_name="m")
    leftover = default_storage.save("clips/half-written.mp4", open(__file__, "rb"))
    row = ImportRow.objects.create(
        batch=batch,
        line=1,
        status=ImportRow.Status.PROCESSING,
        attempts=2,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        written=[leftover],
    )
    assert ingest.sweep_stuck_imports()["failed"] == 1
    row.refresh_from_db()
    assert row.status == ImportRow.Status.ERROR and "lost 2 time(s)" in row.message
    assert not default_storage.exists(leftover)
    assert ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE


def test_a_truncated_object_under_a_content_addressed_name_is_replaced(roots, video_factory):
    make_round("r1")
    good = video_factory("import/good.mp4")
    data = good.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    # A killed worker's half-written original, from before writes were atomic.
    half = default_storage.save(f"originals/{sha}.mp4", open(good, "rb"))
    with open(default_storage.path(half), "r+b") as handle:
        handle.truncate(len(data) // 3)
    batch = ingest.import_manifest_file(
        path=write_manifest(roots / "m.jsonl", [{"video": str(good), "prompt": "p", "round": "r1"}])
    )
    assert batch.rows.get().status == ImportRow.Status.OK
    clip = Clip.objects.get()
    assert clip.original.name == f"originals/{sha}.mp4"
    assert default_storage.open(clip.original.name).read() == data
    assert count_decoded_frames(default_storage.path(clip.video.name)) == clip.frames


def test_storage_gc_lists_and_removes_only_unreferenced_old_objects(roots, video_factory, capsys):
    make_round("r1")
    good = video_factory("import/good.mp4")
    ingest.import_manifest_file(
        path=write_manifest(roots / "m.jsonl", [{"video": str(good), "prompt": "p", "round": "r1"}])
    )
    kept = stored_objects()
    orphan = default_storage.save("clips/orphan.mp4", open(good, "rb"))
    temp = default_storage.save(f"{storage.TEMP_FOLDER}/abc-clip.mp4", open(good, "rb"))
    call_command("storage_gc", "--dry-run", "--grace-minutes", "30")
    assert "0 unreferenced object(s) would remove" in capsys.readouterr().out  # too young
    call_command("storage_gc", "--dry-run", "--grace-minutes", "0")
    out = capsys.readouterr().out
    assert f"would remove {orphan}" in out and f"would remove {temp}" in out
    assert default_storage.exists(orphan)
    call_command("storage_gc", "--grace-minutes", "0")
    assert "2 unreferenced object(s) removed" in capsys.readouterr().out
    assert stored_objects() == kept == referenced_objects()


def test_generated_candidates_ingest_on_storage_without_local_paths(
    roots, tmp_path, video_factory, settings
):
    """The trusted entry point: no import-root check, links the existing Condition, and never
    calls storage.path() (InMemoryStorage has none, as S3 has none)."""
    round_ = make_round("gen")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    condition = Condition.objects.create(
        content_hash="c" * 64,
        image="conditions/existing.png",
        image_sha256="c" * 64,
        prompt="a cat",
        prompt_sha256="d" * 64,
    )
    # The generation job hands its videos over through storage (a GPU host's disk is not shared).
    generated = storage.save_verified(
        video_factory("artifacts-elsewhere/cand-0.mp4"), "generated/run-1/cand-0.mp4"
    ).name
    batch = ingest.import_generated_clips(
        round_id=round_.pk,
        rows=[
            {"video": generated, "condition_id": condition.pk, "seed": 7, "source": "base"},
            {"video": generated, "condition_id": 999999, "seed": 8, "source": "base"},
            {"video": generated, "condition_id": condition.pk, "seed": 2**64, "source": "b"},
            {"video": "/etc/passwd", "condition_id": condition.pk, "seed": 1, "source": "b"},
            {"video": "generated/../clips/x.mp4", "condition_id": condition.pk, "seed": 1},
            {"video": "generated/run-1/missing.mp4", "condition_id": condition.pk, "seed": 1},
        ],
        manifest_name="generation run 1",
    )
    rows = list(batch.rows.order_by("line"))
    assert rows[0].status == ImportRow.Status.OK, rows[0].message
    assert "does not exist" in rows[1].message and "out of range" in rows[2].message
    assert "must be a storage name under generated/" in rows[3].message
    assert "must be a storage name under generated/" in rows[4].message
    assert "is not in storage" in rows[5].message
    clip = Clip.objects.get()
    assert clip.condition_id == condition.pk and clip.seed == 7
    assert clip.source_kind == Clip.SourceKind.POLICY and clip.frames == 8
    assert default_storage.exists(clip.video.name) and default_storage.exists(clip.poster.name)
    assert not default_storage.exists(generated)  # the hand-over copy goes once imported
    assert Condition.objects.count() == 1


def test_a_browser_ready_generated_clip_is_kept_as_generated_and_others_are_transcoded(
    roots, tmp_path, video_factory, settings
):
    """Our generator writes constant-rate H.264 yuv420p MP4 with its index first: the trusted
    entry point keeps those bytes as the browser copy (annotators rate what was generated, with
    no second lossy encode). A generated file that is not browser-ready (index last), and an
    upload of the browser-ready file, are transcoded as before."""
    import numpy as np

    from scoring.anime_reward.video import write_video

    round_ = make_round("gen")
    condition = Condition.objects.create(
        content_hash="c" * 64,
        image="conditions/existing.png",
        image_sha256="c" * 64,
        prompt="a cat",
        prompt_sha256="d" * 64,
    )
    frames = np.random.default_rng(0).integers(0, 255, (9, 48, 64, 3), dtype=np.uint8)
    ready = write_video(frames, tmp_path / "ready.mp4", fps=8)
    index_last = video_factory("index-last.mp4")  # ffmpeg without +faststart: moov after mdat
    assert media.moov_first(ready) and not media.moov_first(index_last)
    names = [
        storage.save_verified(path, f"generated/run-1/{path.name}").name
        for path in (ready, index_last)
    ]
    batch = ingest.import_generated_clips(
        round_id=round_.pk,
        rows=[
            {"video": name, "condition_id": condition.pk, "seed": seed, "source": "policy"}
            for seed, name in enumerate(names)
        ],
        manifest_name="generation run 1",
    )
    assert [row.status for row in batch.rows.order_by("line")] == [ImportRow.Status.OK] * 2
    kept, transcoded = Clip.objects.order_by("seed")
    with default_storage.open(kept.video.name) as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == kept.original_sha256
    with default_storage.open(transcoded.video.name) as handle:
        browser = handle.read()
    assert hashlib.sha256(browser).hexdigest() != transcoded.original_sha256
    copy = tmp_path / "browser.mp4"
    copy.write_bytes(browser)
    assert media.moov_first(copy)  # the transcode puts the index first
    with default_storage.open(kept.poster.name) as handle:
        assert Image.open(handle).size == (64, 48)

    # the same browser-ready file uploaded by a person is transcoded: only our hand-over is trusted
    uploaded = make_round("upload")
    upload = roots / "ready.mp4"
    upload.write_bytes(ready.read_bytes())
    ingest.import_rows(
        round_id=uploaded.pk,
        rows=[{"video": str(upload), "prompt": "a cat", "seed": 1, "source": "vidu"}],
        manifest_name="upload",
    )
    clip = Clip.objects.get(round=uploaded)
    with default_storage.open(clip.video.name) as handle:
        assert hashlib.sha256(handle.read()).hexdigest() != clip.original_sha256


def test_import_clips_says_queued_without_blaming_a_worker_that_is_running(roots):
    make_round("r1")
    batch = ImportBatch.objects.create(manifest_name="m")
    now = timezone.now()
    ImportRow.objects.create(batch=batch, line=1, status="queued")
    summary = ImportClipsCommand()._summary(batch_report(batch))
    assert "1 queued" in summary and "is a Celery worker running" in summary
    ImportRow.objects.create(
        batch=batch, line=2, status="processing", attempts=1, claimed_at=now, heartbeat_at=now
    )
    ImportRow.objects.create(batch=batch, line=3, status="queued", attempts=1)
    summary = ImportClipsCommand()._summary(batch_report(batch))
    assert "1 in progress" in summary and "1 retrying" in summary and "1 queued" in summary
    assert "Celery worker" not in summary


def test_import_report_page_tells_queued_from_in_progress_and_retrying(client, lead):
    batch = ImportBatch.objects.create(manifest_name="m")
    now = timezone.now()
    ImportRow.objects.create(
        batch=batch, line=1, status="processing", attempts=1, claimed_at=now, heartbeat_at=now
    )
    ImportRow.objects.create(batch=batch, line=2, status="queued", attempts=1)
    ImportRow.objects.create(batch=batch, line=3, status="queued")
    client.force_login(lead)
    page = client.get(f"/lead/import/{batch.pk}/").content.decode()
    assert "1 in progress, 1 queued, 1 retrying after a lost worker" in page
    assert "No worker has picked up a row yet" not in page
