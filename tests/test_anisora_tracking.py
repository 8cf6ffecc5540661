"""Character tracking of the anisora preset: SAM 2.1 (transformers' Sam2VideoModel) loaded from a
replica of facebook/sam2.1-hiera-base-plus's folder through the production loader, SAMURAI's
Kalman filter and candidate choice checked against hand arithmetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from scoring.anime_reward.anisora.checkpoints import CheckpointKeyError
from scoring.anime_reward.anisora.layout import ReleaseLayoutError, check_sam2_dir
from scoring.anime_reward.anisora.tracking import (
    KF_SCORE_WEIGHT,
    STABLE_FRAMES,
    BoxKalman,
    Samurai,
    box_iou,
    load_sam2,
    track_boxes,
)
from tests import anisora_replica as replica

pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sam2") / "sam2.1-hiera-base-plus"
    replica.sam2(folder)
    return folder


def test_kalman_follows_a_box_moving_at_constant_speed():
    kalman = BoxKalman()
    box = np.array([10.0, 20.0, 30.0, 60.0])  # 20 wide, 40 high
    assert kalman.xyah(box).tolist() == [20.0, 40.0, 0.5, 40.0]
    mean, cov = kalman.initiate(kalman.xyah(box))
    for step in range(1, 30):  # 2 px right per frame
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, kalman.xyah(box + [2 * step, 0, 2 * step, 0]))
    mean, _ = kalman.predict(mean, cov)
    # the next box is predicted 2 px on: x0 = 10 + 2 * 30
    np.testing.assert_allclose(kalman.xyxy(mean), [70.0, 20.0, 90.0, 60.0], atol=0.5)


def test_box_iou_by_hand():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(box_iou(np.array([0, 0, 10, 10.0]), boxes), [1, 50 / 150, 0, 0])


def test_samurai_prefers_the_candidate_that_keeps_the_motion_once_stable():
    """Before the filter is stable SAM 2's best predicted IoU wins; after STABLE_FRAMES frames
    whose best IoU passed 0.3, 0.25 * IoU(Kalman box, mask box) + 0.75 * predicted IoU wins."""
    moving = lambda t: np.array([10.0 + 2 * t, 20.0, 30.0 + 2 * t, 60.0])  # noqa: E731
    far = np.array([100.0, 100.0, 120.0, 140.0])
    ious = np.array([0.6, 0.7])  # SAM 2 alone takes the far mask
    state = Samurai()
    for t in range(STABLE_FRAMES):  # the character moves, SAM 2 is sure of it
        assert state.choose(np.stack([moving(t), far]), np.array([0.9, 0.1])) == 0
    assert state.stable == STABLE_FRAMES
    # stable: the moving box scores 0.25 * ~1 + 0.75 * 0.6 ~ 0.70 > 0.25 * 0 + 0.75 * 0.7
    assert state.choose(np.stack([moving(STABLE_FRAMES), far]), ious) == 0
    assert KF_SCORE_WEIGHT == 0.25
    # one frame short of stable, SAM 2's argmax is kept
    early = Samurai()
    for t in range(STABLE_FRAMES - 1):
        early.choose(np.stack([moving(t), far]), np.array([0.9, 0.1]))
    assert early.choose(np.stack([moving(STABLE_FRAMES), far]), ious) == 1


def test_an_unsure_frame_restarts_the_filter():
    state = Samurai()
    box = np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    state.choose(box, np.array([0.9, 0.1]))
    state.choose(box, np.array([0.9, 0.1]))
    assert state.stable == 2
    state.choose(box, np.array([0.2, 0.1]))  # best predicted IoU 0.2 <= 0.3
    assert state.stable == 0


def test_sam2_tracks_every_character_through_the_frames(sam2_dir):
    model, spec = load_sam2(sam2_dir)
    assert (spec.height, spec.width) == (replica.SAM2_SIZE, replica.SAM2_SIZE)
    torch.manual_seed(0)
    frames = torch.randint(0, 255, (6, 3, 45, 80), dtype=torch.uint8)
    boxes = torch.tensor([[4.0, 4.0, 40.0, 40.0], [30.0, 10.0, 78.0, 44.0]])
    masks = track_boxes(model, spec, frames, boxes)
    assert masks.shape == (6, 2, 45, 80) and masks.dtype == torch.bool
    again = track_boxes(model, spec, frames, boxes)
    assert torch.equal(masks, again)  # a session holds no state between clips
    plain = track_boxes(model, spec, frames, boxes, motion_cue=False)
    assert plain.shape == masks.shape


class Recorder(Samurai):
    """A motion state that records what SAM 2 offers it and always keeps candidate ``pick``."""

    def __init__(self, pick: int):
        super().__init__()
        self.pick, self.offers = pick, []

    def choose(self, boxes, ious):
        self.offers.append((boxes.shape, ious.shape))
        return self.pick


def test_sam2_keeps_the_candidate_the_motion_state_chooses(sam2_dir):
    """On every tracked frame (not the prompted first one) each character's state is offered
    SAM 2's three candidates and SAM 2 keeps the one it picks."""
    model, spec = load_sam2(sam2_dir)
    torch.manual_seed(1)
    frames = torch.randint(0, 255, (5, 3, 48, 64), dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 2.0, 30.0, 40.0], [20.0, 8.0, 60.0, 46.0]])
    by_pick = {}
    for pick in (0, 1, 2):
        states = [Recorder(pick), Recorder(pick)]
        by_pick[pick] = track_boxes(model, spec, frames, boxes, choosers=states)
        for state in states:
            assert state.offers == [((3, 4), (3,))] * (len(frames) - 1)
    assert torch.equal(by_pick[0][0], by_pick[2][0])  # the prompted frame: no choice
    assert not all(torch.equal(by_pick[0], by_pick[p]) for p in (1, 2))


def test_a_missing_sam2_file_or_key_is_named(sam2_dir, tmp_path):
    folder = tmp_path / "sam2"
    shutil.copytree(sam2_dir, folder)
    check_sam2_dir(folder)
    (folder / "model.safetensors").rename(tmp_path / "weights.safetensors")
    with pytest.raises(ReleaseLayoutError) as error:
        check_sam2_dir(folder)
    assert "LABELHUB_REWARD_SOURCE_SAM" in str(error.value)
    assert "model.safetensors missing" in str(error.value)
    with pytest.raises(ReleaseLayoutError, match="is not set"):
        check_sam2_dir("")
    state = load_file(str(tmp_path / "weights.safetensors"))
    dropped = sorted(k for k in state if "memory_encoder" in k)[0]
    del state[dropped]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointKeyError) as error:
        load_sam2(folder)
    assert dropped in str(error.value)
    # a SAM v1 folder (facebook/sam-vit-base) is refused by its model_type
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "sam"}))
    with pytest.raises(ReleaseLayoutError, match="model_type 'sam'"):
        load_sam2(folder)
