"""The demo data: rendered clips are real, decodable, deterministic videos, and seed_demo loads them
through the real ingest path without duplicating anything when run again."""

import json

import av
import numpy as np
import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from annotation.management.commands import make_demo_clips as demo
from annotation.models import Clip, Condition, Rating, Round
from annotation.services.labels import recompute_all_labels


def test_demo_clip_is_a_decodable_video_with_the_expected_frames(tmp_path):
    frames = demo.render_frames(demo.CONDITIONS[1], "hailuo")
    assert len(frames) == demo.FRAMES == 40
    assert frames[0].shape == (demo.HEIGHT, demo.WIDTH, 3) and frames[0].dtype == np.uint8
    path = tmp_path / "walk.mp4"
    demo.write_mp4(frames, path)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == demo.FPS
    assert len(decoded) == demo.FRAMES
    assert decoded[0].shape == (demo.HEIGHT, demo.WIDTH, 3)
    # Lossy, but close to what was rendered (mean absolute error of a few levels out of 255).
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 6


def test_rendering_is_deterministic_and_generators_differ_from_ground_truth():
    condition = demo.CONDITIONS[0]
    truth = demo.render_frames(condition, "ground_truth")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(truth, demo.render_frames(condition, "ground_truth"), strict=True)
    )
    cog = demo.render_frames(condition, "cogvideox")
    assert np.abs(cog[20].astype(int) - truth[20].astype(int)).mean() > 2  # blur + jitter show


@pytest.mark.django_db(transaction=True)
def test_seed_demo_loads_clips_through_ingest_and_is_idempotent(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "12 imported, 0 error(s)" in out
    assert "annotator-demo" in out

    round_ = Round.objects.get(name=demo.DEMO_ROUND)
    manifest = demo.default_demo_dir() / demo.MANIFEST_NAME
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 12 and {r["source"] for r in rows} == {
        "ground_truth",
        "hailuo",
        "vidu",
        "cogvideox",
    }
    clips = Clip.objects.filter(round=round_)
    assert clips.filter(status=Clip.Status.READY).count() == 12
    assert set(clips.values_list("frames", "fps", "width", "height")) == {(40, 16.0, 480, 320)}
    # Clips of one condition share it: 4 conditions (first frame + prompt), 3 clips each.
    assert Condition.objects.count() == 4
    assert clips.values("condition").distinct().count() == 4
    assert Rating.objects.count() == 24  # two demo raters, every clip
    for username, password in (
        ("annotator", "annotator-demo"),
        ("lead", "lead-demo"),
        ("admin", "admin-demo"),
    ):
        assert authenticate(username=username, password=password) is not None

    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "already imported" in out
    assert (
        Clip.objects.count() == 12
        and Condition.objects.count() == 4
        and Rating.objects.count() == 24
    )
    assert recompute_all_labels(dry_run=True).ok
