"""Reward fine-tuning keeps the clips it needs every epoch on disk, at each fine-tuned encoder's
input size, not in host memory at the decode size (bench/reward_finetune_memory.py measures the
peak RSS this gives)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from scoring.anime_reward.config import PRESETS, RewardTrainConfig
from scoring.anime_reward.frames import FrameCache
from scoring.anime_reward.synthetic import make_gallery, make_rule_clips
from scoring.anime_reward.train import train_reward
from tests.reward_data import reward_items

pytestmark = pytest.mark.usefixtures("two_threads")


def test_frame_cache_round_trips_and_names_its_own_files(tmp_path):
    cache = FrameCache(tmp_path / "cache")
    frames = torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8)
    cache.put("../../etc/passwd", {"frames": frames, "mask": torch.ones(5, dtype=torch.bool)})
    cache.put(7, {"frames": frames[:2]})
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "0.safetensors",
        "1.safetensors",
    ]  # clip ids never become paths
    assert torch.equal(cache.get("../../etc/passwd")["frames"], frames)
    assert cache.get(7)["frames"].shape == (2, 3, 8, 8) and 7 in cache
    cache.close()
    assert not (tmp_path / "cache").exists()


def test_fine_tuning_reads_clips_from_disk_at_the_encoders_size(tmp_path):
    clips = make_rule_clips(tmp_path / "clips", 8, seed=1)
    gallery = make_gallery(tmp_path / "gallery")
    items = reward_items(clips)
    output = tmp_path / "model"
    cache_dir = tmp_path / ".model-frames"
    seen: list[dict] = []

    def progress(step, total, metrics, message):
        if "epoch 1/" in message and cache_dir.exists():
            seen.append({p.name: load_file(str(p)) for p in cache_dir.iterdir()})

    train_reward(
        items,
        RewardTrainConfig(
            preset="tiny",
            epochs=1,
            dimensions=("image_consistency", "character_consistency"),
            finetune_encoders=("image_consistency", "character_consistency"),
        ),
        output,
        on_progress=progress,
        gallery=gallery,
    )
    assert seen, "the cache existed while the encoders trained"
    files = seen[0]
    assert len(files) == 2 * len(items)  # each clip's frames and its character crops
    clip_size = PRESETS["tiny"].images["clip"].size  # 32: CLIP's input, not the 64 px decode
    frames = [t for f in files.values() for k, t in f.items() if k.startswith("frames_")]
    assert frames and all(t.shape[-2:] == (clip_size, clip_size) for t in frames)
    assert all(t.dtype == torch.uint8 for t in frames)
    assert any("crops" in f for f in files.values())
    assert not cache_dir.exists()  # removed once training is done
    assert (output / "image_consistency" / "clip.safetensors").exists()
