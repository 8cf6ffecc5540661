"""A round's preference pairs written for trainers outside LabelHub.

Three formats (``manage.py export_pairs --format ...``):

- ``anisora``: what Index-AniSora's RL trainer reads (``anisora_rl/sat/data_video.py``,
  ``SFTDataset``): ``pairs.json``, a JSON list of records

      {"vae_path": "<winner>.pt,<loser>.pt", "caption": prompt, "w_score": 0-100,
       "l_score": 0-100, "vae_HW": [height, width], "vae_frame": frames,
       "total_frames": frames, "fps": fps}

  and ``latents/<clip_id>.pt`` files. Each is ``torch.save`` of a float tensor
  ``[1, F', C, H', W']``: the loader takes ``torch.load(path)[0]`` (``[F', C, H', W']``, frames
  first as SAT's CogVideoX wants) of the winner and the loser and concatenates them on dim 0.
  The latents are those of our pair cache (``training.alignment.trainer.encode_pairs``: the
  generator's VAE, scaled, on the clip resampled to the generator's frames and fps over its
  duration), so ``vae_HW``/``vae_frame`` are the generator's pixel size and frame count (the
  loader buckets on ``[vae_HW, vae_frame]``) and ``total_frames``/``fps`` describe that
  resampled clip. Scores are our 0-1 rewards x 100, as the release's 2^(w/100) gap expects.
- ``jsonl``: ours, one object per pair (``training.alignment.pairs.Pair`` fields plus the
  pair id, origin and clip sources), the format ``training`` itself writes for each run.
- ``videoalign``: the pairwise CSV of human A/B judgements that VideoAlign-style reward
  trainers read: ``path_A,path_B,prompt,fps_A,fps_B,num_frames_A,num_frames_B,Overall`` with
  ``Overall`` one of ``A``, ``B`` or ``same`` (ties are kept: a tie, or no 2-of-3 majority).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from annotation.models import Clip, PairwiseTask
from annotation.selectors.pairwise import verdict
from labelhub.storage import artifacts_dir, local_path
from training.alignment.cogvideox import load_generator
from training.alignment.config import TrainConfig
from training.alignment.pairs import Pair
from training.alignment.trainer import encode_pairs
from training.models import PreferencePair
from training.services.pairs import pairs_for_training

FORMATS = ("anisora", "jsonl", "videoalign")
VIDEOALIGN_COLUMNS = (
    "path_A",
    "path_B",
    "prompt",
    "fps_A",
    "fps_B",
    "num_frames_A",
    "num_frames_B",
    "Overall",
)


class PairExportError(ValueError):
    """Nothing to export, or an unknown format (a message for the person asking)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the file to hand over (pairs.json, pairs.jsonl or pairs.csv)
    rows: int


def export_pairs(
    *,
    round_id: int,
    fmt: str,
    out_dir: Path,
    origin: str | None = None,
    reward_model_id: int | None = None,
    preset: str = "tiny",
    model_path: str | None = None,
    relative_paths: bool = False,
) -> ExportResult:
    """Write the round's pairs in ``fmt`` under ``out_dir`` (created); see the module docstring."""
    if fmt not in FORMATS:
        raise PairExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "videoalign":
        return _write_videoalign(round_id, out_dir / "pairs.csv")
    pairs = pairs_for_training(round_id=round_id, origin=origin, reward_model_id=reward_model_id)
    if not pairs:
        raise PairExportError(f"round {round_id} has no preference pairs (run a pairs step first)")
    if fmt == "jsonl":
        return _write_jsonl(round_id, pairs, out_dir / "pairs.jsonl", origin, reward_model_id)
    return _write_anisora(round_id, pairs, out_dir, preset, model_path, relative_paths)


def _write_jsonl(round_id, pairs: list[Pair], path: Path, origin, reward_model_id) -> ExportResult:
    rows = PreferencePair.objects.filter(round_id=round_id).select_related("winner", "loser")
    if origin:
        rows = rows.filter(origin=origin)
    if reward_model_id is not None:
        rows = rows.filter(reward_model_id=reward_model_id)
    stored = {(r.winner_id, r.loser_id): r for r in rows}
    with path.open("w", encoding="utf-8") as out:
        for pair in pairs:
            row = stored[(pair.winner_clip_id, pair.loser_clip_id)]
            record = {
                "pair_id": row.pk,
                "round_id": round_id,
                "origin": row.origin,
                "reward_model_id": row.reward_model_id,
                "winner_source": row.winner.source_name,
                "loser_source": row.loser.source_name,
                **asdict(pair),
            }
            out.write(json.dumps(record, sort_keys=True) + "\n")
    return ExportResult(path, len(pairs))


def _write_anisora(
    round_id: int, pairs, out_dir: Path, preset, model_path, relative_paths
) -> ExportResult:
    defaults = TrainConfig.__dataclass_fields__
    components = load_generator(preset, path=model_path)
    cache = encode_pairs(
        pairs,
        components,
        cache_path=artifacts_dir("pair-exports", f"round-{round_id}") / "latent-cache.safetensors",
        image_noise_mean=defaults["image_noise_mean"].default,
        seed=defaults["seed"].default,
    )
    shape = components.shape
    latent_dir = out_dir / "latents"
    latent_dir.mkdir(exist_ok=True)

    def save(clip_id: int, latent: torch.Tensor) -> str:
        path = latent_dir / f"{clip_id}.pt"
        torch.save(latent.unsqueeze(0).contiguous().clone(), path)  # [1, F', C, H', W']
        return str(path.relative_to(out_dir) if relative_paths else path.resolve())

    records = []
    for index, pair in enumerate(pairs):
        winner = save(pair.winner_clip_id, cache["winner_latents"][index])
        loser = save(pair.loser_clip_id, cache["loser_latents"][index])
        records.append(
            {
                "vae_path": f"{winner},{loser}",
                "caption": pair.prompt,
                "w_score": round(100 * pair.winner_reward, 4),
                "l_score": round(100 * pair.loser_reward, 4),
                "vae_HW": [shape.height, shape.width],
                "vae_frame": shape.frames,
                "total_frames": shape.frames,
                "fps": shape.fps,
            }
        )
    path = out_dir / "pairs.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return ExportResult(path, len(records))


def _write_videoalign(round_id: int, path: Path) -> ExportResult:
    tasks = (
        PairwiseTask.objects.filter(
            judgement_count__gte=1, clip_a__round_id=round_id, clip_b__round_id=round_id
        )
        .select_related("clip_a", "clip_b", "condition")
        .prefetch_related("judgements")
        .order_by("pk")
    )
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(VIDEOALIGN_COLUMNS)
        for task in tasks:
            outcome = verdict([j.choice for j in task.judgements.all()])
            a, b = task.clip_a, task.clip_b
            writer.writerow(
                [
                    _video_path(a),
                    _video_path(b),
                    task.condition.prompt,
                    a.fps,
                    b.fps,
                    a.frames,
                    b.frames,
                    {"a": "A", "b": "B"}.get(outcome, "same"),
                ]
            )
            rows += 1
    if rows == 0:
        path.unlink()
        raise PairExportError(f"round {round_id} has no judged A/B tasks")
    return ExportResult(path, rows)


def _video_path(clip: Clip) -> str:
    return local_path(clip.video.name)
