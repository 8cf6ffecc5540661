"""Test data built through the same services users hit (ingest), or directly where a test needs many rows."""

import hashlib
import json
import subprocess
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.models import Clip, Condition, Round
from tests.conftest import render_test_video


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def distinct_videos_manifest(folder: Path, count: int, *, round_name: str = "r1") -> Path:
    """``count`` real 256x192 MP4s of distinct content (1.5 s + i/10 long) and a manifest that
    imports them into ``round_name``: an import long enough to break something in its middle."""
    videos = [
        render_test_video(folder / f"clip{i:02d}.mp4", seconds=1.5 + i / 10, fps=12, size="256x192")
        for i in range(count)
    ]
    rows = [
        {"video": str(v), "prompt": f"clip {i}", "round": round_name} for i, v in enumerate(videos)
    ]
    return write_manifest(folder / "m.jsonl", rows)


def make_round(name: str = "r1", **kwargs) -> Round:
    return Round.objects.create(name=name, **kwargs)


def make_ready_clips(round_: Round, count: int, *, target: int | None = None) -> list[Clip]:
    """Ready clips with tiny stored placeholder media, for assignment tests that never play video."""
    condition_image = default_storage.save("conditions/test.png", ContentFile(b"png"))
    clips = []
    for i in range(count):
        digest = hashlib.sha256(f"{round_.pk}-{i}".encode()).hexdigest()
        condition, _ = Condition.objects.get_or_create(
            content_hash=digest,
            defaults={
                "image": condition_image,
                "image_sha256": digest,
                "prompt": f"prompt {i}",
                "prompt_sha256": digest,
            },
        )
        clips.append(
            Clip(
                round=round_,
                condition=condition,
                source_kind=Clip.SourceKind.EXTERNAL,
                source_name="test",
                original=f"originals/{digest}.mp4",
                original_sha256=digest,
                video=f"clips/{digest}.mp4",
                poster=f"posters/{digest}.jpg",
                frames=8,
                fps=8,
                width=64,
                height=48,
                duration=1.0,
                status=Clip.Status.READY,
                target_ratings=target or round_.ratings_per_clip,
            )
        )
    return Clip.objects.bulk_create(clips)


def scores(value: int = 3, **overrides) -> dict:
    from labelhub.dimensions import DIMENSION_KEYS

    out = {key: value for key in DIMENSION_KEYS}
    out.update(overrides)
    return out


def count_decoded_frames(path) -> int:
    """Frames that decode from the first video stream of ``path`` (a stored clip's completeness
    check: ffprobe decodes every frame)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            f"file:{path}",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return int(out.decode().strip().split(",")[0] or 0)
