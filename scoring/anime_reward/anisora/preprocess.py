"""The released reward code's inputs (reward/reward_infer.py), as constants and small functions.

- frames: if the clip has more than 24 frames, ``np.arange(0, span, span / 24)`` truncated to int,
  span = min(frames, 144) (200 frames -> 0, 6, ..., 138); otherwise every frame;
- each frame (and the condition image, the "key image") is resized to 224 x 224 with PIL bicubic
  and normalised with OpenAI CLIP's mean and std (BLIP consistency models and ActionCLIP);
- ActionCLIP takes 8 of those frames, ``torch.linspace(0, n - 1, 8).long()`` (truncation);
- the Idefics2 regressors get the evaluation prompt below with the clip's prompt, then one
  ``<image> `` per frame, and the frames at their own resolution (their processor resizes);
- the regressors' output is on 0-100 (rounded to 3 decimals) and divided by 100.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..frames import release_frame_indices  # noqa: F401  (the release's frame rule)

MAX_NUM_FRAMES = 24
MAX_LENGTH = 144
IMAGE_SIZE = 224
MOTION_FRAMES = 8
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ROUND_DIGITS = 3

# reward_infer.py's REGRESSION_QUERY_PROMPT, character for character (both regressors get it)
REGRESSION_QUERY_PROMPT = """
Suppose you are an expert in judging and evaluating the quality of AI-generated videos,
please watch the following frames of a given video and see the text prompt for generating the video,
then give scores from quality dimensions: the quality of the video in terms of clearness, resolution, brightness, and color

Output a float number from 0 to 100,
the higher the number is, the better the video performs in that sub-score, 
the lowest 0 means Bad, the highest 100 means Perfect/Real (the video is like a real video)

For this video, the text prompt is "{text_prompt}",
all the frames of video are as follows:
"""

# prepare_text_embedding's two prompts: reward = probability of the first
MOTION_PROMPTS = (
    "The protagonist has a large range of movement, such as running, jumping, dancing, or waving arms.",
    "The protagonist remain stationary in the video with no apparent movement.",
)
CHARACTER_PROMPT = "character."
BOX_THRESHOLD = 0.5  # samurai_with_gdino_t2v.py: box and text thresholds
TEXT_THRESHOLD = 0.5
MAX_CHARACTERS = 5  # more detections: the 5 largest boxes
CHARACTER_FRAMES = 8  # frame_nums of the recogniser's query


def motion_frame_indices(frame_count: int) -> list[int]:
    """Which of the sampled frames ActionCLIP sees."""
    return torch.linspace(0, frame_count - 1, steps=MOTION_FRAMES).long().tolist()


def evaluation_prompt(prompt: str, frame_count: int) -> str:
    """The regressors' text: the query with the clip's prompt, one ``<image> `` per frame."""
    text = REGRESSION_QUERY_PROMPT.format(text_prompt=prompt)
    return text + "<image> " * max(0, frame_count - text.count("<image>"))


def regression_reward(logit: float) -> float:
    """A regressor's 0-100 output as the release reports it: rounded, divided by 100."""
    return round(float(logit), ROUND_DIGITS) / 100


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) uint8 -> PIL RGB."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def resize_224(images: list[Image.Image], resample=Image.Resampling.BICUBIC) -> torch.Tensor:
    """PIL images -> (N, 3, 224, 224) uint8, resized by PIL with ``resample``."""
    arrays = [np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), resample)) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def standardise(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, 224, 224) uint8 -> float: ToTensor's / 255, then CLIP's mean and std."""
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def normalise(images: list[Image.Image], resample=Image.Resampling.BICUBIC) -> torch.Tensor:
    """PIL images -> (N, 3, 224, 224) float: resized with PIL ``resample``, CLIP mean/std."""
    return standardise(resize_224(images, resample))


def key_pixels(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames -> (T, 3, 224, 224) as ``load_key_image`` prepares them."""
    return normalise([to_pil(f) for f in frames])
