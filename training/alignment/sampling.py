"""Candidate generation: K videos per condition from the base generator or base + a policy LoRA.

Plain Python + torch + diffusers (no Django). Each candidate's seed is recorded; with the same
``base_seed`` two policies start every candidate from the same initial noise, so their rounds
differ only by the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from labelhub.ml import Progress
from scoring.anime_reward.video import read_image, write_video
from training.alignment.cogvideox import GeneratorComponents
from training.alignment.config import SAMPLERS


@dataclass(frozen=True)
class GenerationCondition:
    """An image-to-video input: a stable key (e.g. the Condition id), prompt and first frame."""

    key: str
    prompt: str
    first_frame: str


@dataclass(frozen=True)
class GeneratedCandidate:
    condition_key: str
    index: int
    seed: int
    video: str
    prompt: str
    first_frame: str
    sampler: str = ""


def candidate_seed(base_seed: int, index: int) -> int:
    """The seed of candidate ``index`` of every condition."""
    return base_seed + index


def build_pipeline(components: GeneratorComponents, *, sampler: str = "ddim"):
    """``CogVideoXImageToVideoPipeline`` from already built components (nothing loaded), with the
    ``sampler``'s scheduler made from the checkpoint's scheduler config (same betas, zero-SNR
    rescale, timestep spacing and v-prediction)."""
    from diffusers import (
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXImageToVideoPipeline,
    )

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    scheduler_class = CogVideoXDPMScheduler if sampler == "dpm" else CogVideoXDDIMScheduler
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=components.tokenizer,
        text_encoder=components.text_encoder,
        vae=components.vae,
        transformer=components.transformer,
        scheduler=scheduler_class.from_config(components.scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def uses_dynamic_cfg(sampler: str) -> bool:
    """The release samples DPM++ with dynamic CFG (guidance rising from 1 to 1 + scale over the
    steps, ``DynamicCFG`` with exp 5 in its SAT config; ``use_dynamic_cfg`` in diffusers); DDIM
    keeps the constant guidance the pipeline defaults to."""
    return sampler == "dpm"


def generate_candidates(
    components: GeneratorComponents,
    conditions: Sequence[GenerationCondition],
    *,
    candidates_per_condition: int,
    base_seed: int,
    out_dir: str | Path,
    lora_dir: str | Path | None = None,
    inference_steps: int | None = None,
    guidance_scale: float | None = None,
    on_progress: Progress | None = None,
    skip: Collection[tuple[str, int]] = (),
    sampler: str | None = None,
    on_candidate: Callable[[GeneratedCandidate], None] | None = None,
) -> list[GeneratedCandidate]:
    """Generate ``candidates_per_condition`` MP4s per condition into ``out_dir``, except the
    (condition key, seed) pairs in ``skip`` (already generated: a resumed run makes only the rest).

    ``on_candidate`` receives each candidate as soon as its video is written (the platform hands
    it over at once, so a killed worker loses only the video in flight).

    With ``lora_dir`` the policy's LoRA is loaded through diffusers' ``load_lora_weights`` for the
    duration of the call and unloaded afterwards, so ``components`` stay the base generator.
    ``sampler`` (``SAMPLERS``) defaults to the preset's: DPM++ with dynamic CFG for the 5B preset,
    as the release samples; each candidate records the one it was made with.
    """
    if candidates_per_condition < 1:
        raise ValueError(f"candidates_per_condition must be >= 1; got {candidates_per_condition}")
    shape = components.shape
    steps = inference_steps or shape.inference_steps
    guidance = shape.guidance_scale if guidance_scale is None else guidance_scale
    out_dir = Path(out_dir)
    sampler = sampler or shape.sampler
    pipe = build_pipeline(components, sampler=sampler)
    device = next(components.transformer.parameters()).device
    if lora_dir is not None:
        pipe.load_lora_weights(str(lora_dir), adapter_name="policy")
    todo = [
        (condition, k, candidate_seed(base_seed, k))
        for condition in conditions
        for k in range(candidates_per_condition)
        if (condition.key, candidate_seed(base_seed, k)) not in skip
    ]
    results = []
    # The pipeline warns on every call when a prompt is longer than the text encoder reads (it is
    # truncated; always so on the tiny preset's 16 tokens): one line per candidate is noise.
    pipeline_log = logging.getLogger(type(pipe).__module__)
    previous_level = pipeline_log.level
    pipeline_log.setLevel(logging.ERROR)
    try:
        images: dict[str, object] = {}
        for done, (condition, k, seed) in enumerate(todo, 1):
            if condition.key not in images:
                images[condition.key] = read_image(condition.first_frame)
            with torch.no_grad():
                frames = pipe(
                    image=images[condition.key],
                    prompt=condition.prompt,
                    height=shape.height,
                    width=shape.width,
                    num_frames=shape.frames,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    use_dynamic_cfg=uses_dynamic_cfg(sampler),
                    generator=torch.Generator(device=device).manual_seed(seed),
                    max_sequence_length=components.max_text_tokens,
                    output_type="np",
                ).frames[0]
            video = write_video(
                frames, out_dir / f"{condition.key}-{k:02d}-seed{seed}.mp4", fps=shape.fps
            )
            results.append(
                GeneratedCandidate(
                    condition.key,
                    k,
                    seed,
                    str(video),
                    condition.prompt,
                    condition.first_frame,
                    sampler,
                )
            )
            if on_candidate is not None:
                on_candidate(results[-1])
            if on_progress is not None:
                on_progress(done, len(todo))
    finally:
        pipeline_log.setLevel(previous_level)
        if lora_dir is not None:
            pipe.unload_lora_weights()
    return results
