"""Pairs for the seed's own trainer: ``manage.py export_pairs`` writes a round's preference pairs as
Index-AniSora's RL data (read back here by a loader written from ``anisora_rl/sat/data_video.py``'s
``SFTDataset``: its field names, its ``[vae_HW, vae_frame]`` buckets, ``torch.load(path)[0]`` of
winner and loser concatenated on dim 0), as our JSONL, and human A/B judgements as the
VideoAlign pairwise CSV with ties kept."""

import csv
import json
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from safetensors.torch import load_file

from annotation.models import Clip, PairwiseTask
from annotation.services.pairwise import create_pairwise_tasks, lease_next_pair, submit_judgement
from labelhub.storage import artifacts_dir
from tests.conftest import make_user
from tests.test_dataset_folder import seed_snapshot
from training.alignment.config import SHAPES
from training.models import PreferencePair
from training.services.pairs import build_round_pairs

# SFTDataset's bucket config maps a size name to [H, W] and frame counts to a probability; a record
# is kept only when str([vae_HW, vae_frame]) is one of its buckets. The tiny generator's bucket:
TINY = SHAPES["tiny"]
BUCKETS = {str([[TINY.height, TINY.width], TINY.frames])}


def anisora_records(json_path: Path, *, min_num_frames: int, fps: int) -> list[dict]:
    """The seed trainer's reading of the file, field by field (SFTDataset.__load_video_info__ and
    __get_video__), strict where it would silently skip: every record must be used."""
    items = []
    for info in json.loads(json_path.read_text()):
        total_frames, clip_fps = float(info["total_frames"]), float(info["fps"])
        w_score, l_score = float(info["w_score"]), float(info["l_score"])
        assert total_frames / clip_fps >= min_num_frames / fps, "the trainer would skip it as short"
        cho_item = [info["vae_HW"], info["vae_frame"]]
        assert cho_item[1] > 0 and str(cho_item) in BUCKETS, cho_item
        path_w, path_l = info["vae_path"].split(",")
        latent_w = torch.load(path_w, map_location="cpu", weights_only=True)[0]
        latent_l = torch.load(path_l, map_location="cpu", weights_only=True)[0]
        items.append(
            {
                "mp4": torch.cat([latent_w, latent_l], dim=0),
                "txt": info["caption"],
                "num_frames": cho_item[1],
                "w_score": w_score,
                "l_score": l_score,
                "paths": (path_w, path_l),
            }
        )
    return items


@pytest.fixture
def paired_round(tmp_path, lead, django_capture_on_commit_callbacks):
    round_, _snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
    pairs = build_round_pairs(round_id=round_.pk, origin=PreferencePair.Origin.HUMAN_LABELS)
    assert len(pairs) >= 2
    return round_


@pytest.mark.django_db(transaction=True)
def test_anisora_pairs_read_back_with_the_shapes_the_seed_loader_expects(paired_round, tmp_path):
    out = tmp_path / "anisora"
    call_command("export_pairs", round_id=paired_round.pk, fmt="anisora", out=str(out))
    items = anisora_records(out / "pairs.json", min_num_frames=TINY.frames, fps=TINY.fps)
    pairs = list(PreferencePair.objects.filter(round=paired_round).order_by("condition_id", "pk"))
    assert len(items) == len(pairs)

    # The latents are our pair cache's rows, frames first: [F', C, H', W'] each, 2F' together.
    cache = load_file(
        artifacts_dir("pair-exports", f"round-{paired_round.pk}") / "latent-cache.safetensors"
    )
    frames, channels, height, width = cache["winner_latents"].shape[1:]
    assert frames == (TINY.frames - 1) // 4 + 1 and channels < height * 4  # F' C H' W'
    for index, (item, pair) in enumerate(zip(items, pairs, strict=True)):
        assert item["mp4"].shape == (2 * frames, channels, height, width)
        assert torch.equal(item["mp4"][:frames], cache["winner_latents"][index])
        assert torch.equal(item["mp4"][frames:], cache["loser_latents"][index])
        assert Path(item["paths"][0]).name == f"{pair.winner_id}.pt"
        assert item["txt"] == pair.condition.prompt
        assert item["w_score"] == pytest.approx(100 * pair.winner_reward, abs=1e-3)
        assert item["l_score"] == pytest.approx(100 * pair.loser_reward, abs=1e-3)
        assert 0 <= item["l_score"] <= item["w_score"] <= 100

    # Paths relative to the folder, for a trainer run from there.
    call_command(
        "export_pairs",
        round_id=paired_round.pk,
        fmt="anisora",
        out=str(tmp_path / "rel"),
        relative_paths=True,
    )
    record = json.loads((tmp_path / "rel" / "pairs.json").read_text())[0]
    assert record["vae_path"].startswith("latents/") and ",latents/" in record["vae_path"]


@pytest.mark.django_db(transaction=True)
def test_jsonl_pairs_carry_ids_rewards_and_files(paired_round, tmp_path):
    call_command("export_pairs", round_id=paired_round.pk, fmt="jsonl", out=str(tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    stored = {p.pk: p for p in PreferencePair.objects.filter(round=paired_round)}
    assert {row["pair_id"] for row in rows} == set(stored)
    for row in rows:
        pair = stored[row["pair_id"]]
        assert (row["winner_clip_id"], row["loser_clip_id"]) == (pair.winner_id, pair.loser_id)
        assert row["winner_reward"] == pair.winner_reward and row["origin"] == "human_labels"
        assert Path(row["winner_video"]).is_file() and Path(row["first_frame"]).is_file()


@pytest.mark.django_db(transaction=True)
def test_videoalign_csv_keeps_ties_and_orders_a_and_b_as_stored(paired_round, tmp_path):
    tasks = create_pairwise_tasks(
        source_a="ground_truth", source_b="hailuo", round_ids=[paired_round.pk]
    )
    assert len(tasks) == 4
    # Three judges: task 0 -> A wins 3-0, task 1 -> B wins 2-1, task 2 -> no majority (tie),
    # task 3 -> unjudged (left out).
    plans = {tasks[0].pk: "aaa", tasks[1].pk: "bab", tasks[2].pk: "abt"}
    for j in range(3):
        judge = make_user(f"judge-{j}", "annotator")
        while lease := lease_next_pair(judge=judge):
            task = PairwiseTask.objects.get(pk=lease.task_id)
            plan = plans.get(task.pk)
            if plan is None:
                break
            want = plan[j]
            side = (
                "tie" if want == "t" else ("left" if (want == "a") == task.a_on_left else "right")
            )
            submit_judgement(task_id=task.pk, judge=judge, side=side)
    call_command("export_pairs", round_id=paired_round.pk, fmt="videoalign", out=str(tmp_path))
    with (tmp_path / "pairs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "path_A", "path_B", "prompt", "fps_A", "fps_B", "num_frames_A", "num_frames_B", "Overall",
    ]  # fmt: skip
    assert [row["Overall"] for row in rows] == ["A", "B", "same"]
    first = PairwiseTask.objects.get(pk=tasks[0].pk)
    a = Clip.objects.get(pk=first.clip_a_id)
    assert Path(rows[0]["path_A"]).is_file() and rows[0]["prompt"] == first.condition.prompt
    assert float(rows[0]["fps_A"]) == a.fps and int(rows[0]["num_frames_A"]) == a.frames


@pytest.mark.django_db
def test_a_round_without_pairs_is_a_clear_error(tmp_path):
    from annotation.models import Round

    round_ = Round.objects.create(name="empty")
    with pytest.raises(CommandError, match="no preference pairs"):
        call_command("export_pairs", round_id=round_.pk, fmt="anisora", out=str(tmp_path))
    with pytest.raises(CommandError, match="no judged A/B tasks"):
        call_command("export_pairs", round_id=round_.pk, fmt="videoalign", out=str(tmp_path))
