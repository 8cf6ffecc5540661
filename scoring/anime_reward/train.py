"""Train AnimeReward's six regressors on averaged human labels, evaluate them on the held-out split.

Read top to bottom: config -> data -> model -> features (frozen encoders run once per clip and are
cached, so epochs only touch the heads) -> one visible training loop per dimension -> evaluation on
the test split -> checkpoints (safetensors + config.json per dimension).

Targets are the 1-5 label means mapped to [0, 1] with ``(mean - 1) / 4``. The split comes with the
items (the export's grouped split): no condition image or prompt is in both train and test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from labelhub.devices import pick_device
from labelhub.dimensions import DIMENSION_KEYS, score_to_unit
from labelhub.progress import Progress

from .anisora.train import train_anisora
from .config import RewardTrainConfig, get_preset
from .evaluate import evaluate_rewards
from .frames import ClipSpec, DecodedClip, FrameCache, collate, iter_decoded_batches
from .models import AnimeReward, CharacterCrops, Features, shrink_pixels

CROP_FIELDS = ("crops", "frame_mask", "condition_crops", "reference", "has_reference", "weights")


@dataclass
class RewardItem:
    """One labelled clip of an export: paths, prompt, its split group and its 1-5 label means."""

    clip_id: int | str
    video_path: str
    condition_image_path: str
    prompt: str
    labels: dict[str, float]
    split: str
    group: str = ""
    condition_id: int | str | None = None
    character_reference_path: str = ""
    character_id: int | str | None = None  # key into the character gallery passed to training

    def __post_init__(self):
        if self.split not in ("train", "test"):
            raise ValueError(
                f"clip {self.clip_id}: split must be train or test, not {self.split!r}"
            )
        missing = set(DIMENSION_KEYS) - set(self.labels)
        if missing:
            raise ValueError(f"clip {self.clip_id}: no label for {sorted(missing)}")

    @property
    def spec(self) -> ClipSpec:
        return ClipSpec(
            self.clip_id,
            self.video_path,
            self.condition_image_path,
            self.prompt,
            self.character_reference_path,
            self.character_id,
        )

    def targets(self) -> dict[str, float]:
        """Labels on the reward scale, with ``overall`` as the mean of the six."""
        unit = {key: score_to_unit(self.labels[key]) for key in DIMENSION_KEYS}
        return {**unit, "overall": sum(unit.values()) / len(unit)}


@dataclass
class TrainResult:
    output_dir: str
    metrics: (
        dict  # key (six dimensions + overall) -> pearson, spearman, kendall, mae, pairwise_accuracy
    )
    evaluation: list  # per test clip: clip_id, condition_id, predicted {key: r}, human {key: r}
    losses: dict  # dimension -> mean training loss per epoch
    skipped: dict  # clip_id -> why it could not be decoded
    train_clips: int
    test_clips: int
    seconds: float


def stack_features(parts: Sequence[Features]) -> Features:
    """Pad per-clip (1, L, F) features to a common L (mask False on padding) and stack them."""
    length = max(values.shape[1] for values, _ in parts)
    values_out, masks_out = [], []
    for values, mask in parts:
        pad = length - values.shape[1]
        values_out.append(F.pad(values, (0, 0, 0, pad)))
        masks_out.append(F.pad(mask, (0, pad), value=False))
    return torch.cat(values_out), torch.cat(masks_out)


def train_reward(
    items: Sequence[RewardItem],
    config: RewardTrainConfig,
    output_dir: str | Path,
    on_progress: Progress | None = None,
    *,
    gallery: dict | None = None,
) -> TrainResult:
    """Train heads (and, per dimension, encoders) on the train split, evaluate on the test split,
    save checkpoints. ``gallery``: character id -> reference image paths, for items that carry a
    ``character_id`` (character consistency compares the tracked crops with that character)."""
    if config.preset == "anisora":  # the released models: their own loader, heads and objectives
        return TrainResult(**train_anisora(items, config, output_dir, on_progress, gallery=gallery))
    started = time.monotonic()
    report = on_progress or (lambda step, total, metrics, message: None)
    torch.manual_seed(config.seed)

    # --- data --------------------------------------------------------------------------------
    device = pick_device(config.device)
    mixed_precision = config.mixed_precision
    if mixed_precision == "auto":
        mixed_precision = "bf16" if device == "cuda" else "no"
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    preset = get_preset(config.preset)
    finetuned = config.finetuned_dimensions()
    checkpointing = (
        config.gradient_checkpointing
        if config.gradient_checkpointing is not None
        else device == "cuda"
    )
    missing = {
        str(i.character_id)
        for i in items
        if i.character_id is not None and str(i.character_id) not in {str(c) for c in gallery or {}}
    }
    if missing:
        raise ValueError(f"items name characters that are not in the gallery: {sorted(missing)}")

    # --- model -------------------------------------------------------------------------------
    # Frozen encoders run in bf16 on the GPU; fine-tuned copies keep fp32 weights under autocast.
    encoder_dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float32
    model = AnimeReward.from_preset(
        config.preset,
        sources=config.encoder_sources or None,
        device=accelerator.device,
        dtype=encoder_dtype,
        head_hidden=config.head_hidden,
        dropout=config.dropout,
        keyframes=config.keyframes,
        track_frames=config.track_frames,
        gallery=gallery,
    )
    character = model.dimensions["character_consistency"]

    # --- features: decode each clip once, run the frozen encoders once --------------------------
    encode_batches = -(-len(items) // config.encode_batch_size)
    train_steps = {
        key: config.for_dimension(key, "epochs")
        * -(-sum(i.split == "train" for i in items) // config.batch_size)
        for key in config.dimensions
    }
    total = encode_batches + sum(train_steps.values())
    step = 0
    cached: dict[str, dict] = {key: {} for key in DIMENSION_KEYS}  # key -> clip_id -> features
    # Fine-tuned encoders need the clips again every epoch: their frames (at each fine-tuned
    # encoder's input size, not the decode size: 378 px instead of 1024 for full) and the
    # character crops go to a disk cache, so host memory does not grow with the dataset.
    keep_decoded = any(key != character.key for key in finetuned)
    keep_crops = character.key in finetuned
    keep_sizes = sorted(
        {
            min(preset.frame_size, preset.images[name].size)
            for key in finetuned
            if key != character.key
            for name in model.dimensions[key].tuned_encoder_names
        }
    )
    clip_cache = (
        FrameCache(Path(output_dir).parent / f".{Path(output_dir).name}-frames")
        if keep_decoded or keep_crops
        else None
    )
    crop_character_ids: dict = {}  # clip_id -> gallery character (the crops' one non-tensor)
    skipped: dict = {}
    report(step, total, {}, f"encoding {len(items)} clips with the {config.preset} encoders")
    by_id = {item.clip_id: item for item in items}
    for batch in iter_decoded_batches(
        [i.spec for i in items],
        size=preset.frame_size,
        batch_size=config.encode_batch_size,
        workers=config.decode_workers,
    ):
        skipped.update(batch.errors)
        if batch.inputs is not None:
            with torch.no_grad(), accelerator.autocast():
                memo: dict = {}
                features = {
                    key: dim.features(batch.inputs, memo)
                    for key, dim in model.dimensions.items()
                    if key != character.key
                }
                crops = character.track(batch.inputs)
                features[character.key] = character.features_from_crops(crops)
            for key, (values, mask) in features.items():
                for row, spec in enumerate(batch.specs):
                    cached[key][spec.clip_id] = (
                        values[row : row + 1].float().cpu(),
                        mask[row : row + 1].cpu(),
                    )
            for row, spec in enumerate(batch.specs):
                if keep_crops:
                    one = crops.select([row])
                    crop_character_ids[spec.clip_id] = one.character_ids[0]
                    clip_cache.put(
                        ("crops", spec.clip_id), {f: getattr(one, f) for f in CROP_FIELDS}
                    )
                if keep_decoded:
                    inputs = batch.inputs
                    images = {
                        "frames": inputs.frames[row][inputs.frame_mask[row]],
                        "condition": inputs.condition[row][None],
                    }
                    if inputs.has_reference[row]:
                        images["reference"] = inputs.reference[row][None]
                    clip_cache.put(
                        ("clip", spec.clip_id),
                        {
                            f"{name}_{size}": shrink_pixels(image, size)
                            if image.shape[-1] > size
                            else image
                            for name, image in images.items()
                            for size in keep_sizes
                        },
                    )
        step += 1
        report(step, total, {}, "")
    for clip_id, error in skipped.items():
        report(step, total, {}, f"skipped clip {clip_id}: {error}")

    train_ids = [i.clip_id for i in items if i.split == "train" and i.clip_id not in skipped]
    test_ids = [i.clip_id for i in items if i.split == "test" and i.clip_id not in skipped]
    if len(train_ids) < 2:
        raise ValueError(f"need at least 2 decodable training clips, have {len(train_ids)}")

    def cached_crops(ids: list) -> CharacterCrops:
        parts = []
        for i in ids:
            tensors = clip_cache.get(("crops", i))
            parts.append(
                CharacterCrops(
                    **{f: tensors[f] for f in CROP_FIELDS}, character_ids=[crop_character_ids[i]]
                )
            )
        return CharacterCrops.cat(parts)

    def live_features(dimension, ids: list) -> Features:
        """Features through the dimension's own (trainable) encoders, from the disk cache."""
        if dimension.key == character.key:
            return dimension.features_from_crops(cached_crops(ids))
        size = max(
            min(preset.frame_size, preset.images[name].size)
            for name in dimension.tuned_encoder_names
        )
        clips = []
        for i in ids:
            tensors = clip_cache.get(("clip", i))
            reference = tensors.get(f"reference_{size}")
            clips.append(
                DecodedClip(
                    tensors[f"frames_{size}"],
                    tensors[f"condition_{size}"][0],
                    reference[0] if reference is not None else None,
                )
            )
        inputs = collate(
            clips, [by_id[i].prompt for i in ids], [by_id[i].character_id for i in ids]
        )
        return dimension.features(inputs, {})

    # --- training: one loop per dimension ------------------------------------------------------
    losses: dict[str, list[float]] = {}
    for key in config.dimensions:
        # Each dimension draws its batches, dropout and jitter from its own seed, so training one
        # dimension alone gives the model a run of all six gives it (up to float rounding).
        dimension_seed = config.seed * len(DIMENSION_KEYS) + DIMENSION_KEYS.index(key)
        torch.manual_seed(dimension_seed)
        generator = torch.Generator().manual_seed(dimension_seed)
        dimension = model.dimensions[key]
        finetune = key in finetuned
        if finetune:
            dimension.unshare_encoders(
                frozen_layers=config.encoder_frozen_layers, gradient_checkpointing=checkpointing
            )
        dimension.head.fit_normalizer(*stack_features([cached[key][i] for i in train_ids]))
        param_groups = [
            {
                "params": list(dimension.head.parameters()),
                "lr": config.for_dimension(key, "learning_rate"),
            }
        ]
        if finetune:
            param_groups.append(
                {
                    "params": dimension.encoder_parameters(),
                    "lr": config.for_dimension(key, "encoder_learning_rate"),
                }
            )
        contrastive_weight = config.for_dimension(key, "contrastive_weight")
        epochs = config.for_dimension(key, "epochs")
        optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
        targets = torch.tensor([by_id[i].targets()[key] for i in train_ids])
        losses[key] = []
        dimension.train()
        for epoch in range(epochs):
            order = torch.randperm(len(train_ids), generator=generator)
            epoch_loss = 0.0
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size].tolist()
                batch_ids = [train_ids[r] for r in rows]
                with accelerator.autocast():
                    if finetune:
                        values, mask = live_features(dimension, batch_ids)
                    else:
                        values, mask = stack_features([cached[key][i] for i in batch_ids])
                    predicted = dimension.reward(
                        values.to(accelerator.device), mask.to(accelerator.device)
                    )
                    loss = F.mse_loss(predicted.float(), targets[rows].to(accelerator.device))
                    if finetune and key == character.key and contrastive_weight:
                        contrastive = character.contrastive_loss(
                            cached_crops(batch_ids),
                            targets[rows],
                            jitter=config.contrastive_jitter,
                        )
                        loss = loss + contrastive_weight * contrastive
                    elif finetune and key == "text_consistency" and contrastive_weight:
                        contrastive = dimension.contrastive_loss(
                            values, [by_id[i].prompt for i in batch_ids], targets[rows]
                        )
                        loss = loss + contrastive_weight * contrastive
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                epoch_loss += loss.item() * len(rows)
                step += 1
                report(step, total, {}, "")
            losses[key].append(epoch_loss / len(train_ids))
            report(
                step,
                total,
                {f"{key}/loss": losses[key][-1]},
                f"{key} epoch {epoch + 1}/{epochs} loss {losses[key][-1]:.4f}",
            )
        dimension.eval()
        if finetune:
            for name in dimension.tuned_encoder_names:
                getattr(dimension, name).requires_grad_(False)
            # Fine-tuned encoders change the features: recompute them for evaluation.
            for start in range(0, len(test_ids), config.encode_batch_size):
                ids = test_ids[start : start + config.encode_batch_size]
                with torch.no_grad(), accelerator.autocast():
                    values, mask = live_features(dimension, ids)
                for row, clip_id in enumerate(ids):
                    cached[key][clip_id] = (
                        values[row : row + 1].float().cpu(),
                        mask[row : row + 1].cpu(),
                    )

    if clip_cache is not None:
        clip_cache.close()

    # --- evaluation on the held-out split ------------------------------------------------------
    evaluation, metrics = [], {}
    if test_ids:
        with torch.no_grad():
            rewards = model.rewards_from_features(
                {
                    key: tuple(
                        t.to(accelerator.device)
                        for t in stack_features([cached[key][i] for i in test_ids])
                    )
                    for key in DIMENSION_KEYS
                }
            )
        predicted = {
            key: rewards[key].float().cpu().tolist() for key in (*DIMENSION_KEYS, "overall")
        }
        human = {key: [by_id[i].targets()[key] for i in test_ids] for key in predicted}
        conditions = [
            by_id[i].condition_id if by_id[i].condition_id is not None else by_id[i].group
            for i in test_ids
        ]
        metrics = evaluate_rewards(predicted, human, conditions)
        evaluation = [
            {
                "clip_id": clip_id,
                "condition_id": conditions[row],
                "predicted": {key: predicted[key][row] for key in predicted},
                "human": {key: human[key][row] for key in human},
            }
            for row, clip_id in enumerate(test_ids)
        ]
        summary = ", ".join(
            f"{key} {m['spearman']:.3f}" for key, m in metrics.items() if m["spearman"] is not None
        )
        report(step, total, {}, f"test Spearman: {summary}")

    # --- checkpoints -----------------------------------------------------------------------------
    output_dir = Path(output_dir)
    train_config = asdict(config)
    train_config["dimensions"] = list(config.dimensions)
    train_config["finetuned_dimensions"] = list(finetuned)
    model.save(
        output_dir,
        extra_config={"train_config": train_config, "trained_dimensions": list(config.dimensions)},
    )
    (output_dir / "evaluation.json").write_text(
        json.dumps(
            {"metrics": metrics, "evaluation": evaluation, "losses": losses, "skipped": skipped},
            indent=1,
        )
    )
    report(total, total, {}, f"saved to {output_dir}")
    return TrainResult(
        str(output_dir),
        metrics,
        evaluation,
        losses,
        skipped,
        len(train_ids),
        len(test_ids),
        time.monotonic() - started,
    )
