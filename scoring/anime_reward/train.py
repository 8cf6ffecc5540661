"""Train AnimeReward's six per-dimension models on human labels, evaluate them on the held-out split.

Read top to bottom: config -> data -> model -> features (frozen encoders run once per clip and are
cached, so epochs only touch the heads) -> the objectives and the per-dimension losses -> one
visible training loop per dimension -> evaluation on the test split -> checkpoints (safetensors +
config.json per dimension).

Objectives (``RewardTrainConfig.objective``):
- ``regression``: MSE to the 1-5 label means mapped to [0, 1] with ``(mean - 1) / 4``;
- ``pairs``: Bradley-Terry with ties on the A/B/tie judgements of the train split
  (``comparisons``), on the head's logits; the tie parameter is learnt per dimension;
- ``joint``: the two summed, the pairs loss weighted by ``pair_weight``.
Whatever it learnt from, a dimension's reward stays ``sigmoid(logit)`` in [0, 1].

The split comes with the items (the export's grouped split): no condition image or prompt is in
both train and test, and a judgement's two clips are on one side.

Several processes (``accelerate launch``, ``scoring.anime_reward.ranks``) train the model one
process trains: the frozen encoders' work is split by encode batch and all-gathered; every
process draws the same batches, runs the (small) head over the whole global batch, so its dropout
draws are the 1-process ones, and takes the loss of its share of the rows (``rows[rank::N]``),
normalised by the global batch size; gradients are summed across processes before each step, so
every process takes the one step. Only the main process evaluates and writes the model. Encoder
fine-tuning is refused on several processes (its contrastive losses and live features are not
made exact yet).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from labelhub.devices import pick_device
from labelhub.dimensions import DIMENSION_KEYS, score_to_unit
from labelhub.progress import Progress

from .anisora.train import train_anisora
from .comparisons import Comparison, TieParameter, choice_indices, comparison_loss
from .config import RewardTrainConfig, get_preset
from .evaluate import evaluate_comparisons, evaluate_held_out
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
    # key (six dimensions + overall) -> pearson, spearman, kendall, mae, pairwise_accuracy, and
    # on held-out judgements comparison_accuracy (without ties), comparison_accuracy_ties, counts
    metrics: dict
    evaluation: list  # per test clip: clip_id, condition_id, predicted {key: r}, human {key: r}
    losses: dict  # dimension -> mean training loss per epoch
    skipped: dict  # clip_id -> why it could not be decoded
    train_clips: int
    test_clips: int
    seconds: float
    comparisons: dict | None = None  # train / test / left_out judgement counts
    tie_parameters: dict | None = None  # dimension -> the learnt tie parameter (pairs, joint)


def stack_features(parts: Sequence[Features]) -> Features:
    """Pad per-clip (1, L, F) features to a common L (mask False on padding) and stack them."""
    length = max(values.shape[1] for values, _ in parts)
    values_out, masks_out = [], []
    for values, mask in parts:
        pad = length - values.shape[1]
        values_out.append(F.pad(values, (0, 0, 0, pad)))
        masks_out.append(F.pad(mask, (0, pad), value=False))
    return torch.cat(values_out), torch.cat(masks_out)


# --- losses: the objectives, and what each dimension adds when it fine-tunes ----------------------


@dataclass
class LabelledBatch:
    """A batch of labelled training clips of one dimension, as its auxiliary loss sees it."""

    dimension: torch.nn.Module
    values: torch.Tensor  # the dimension's live features of the clips
    targets: torch.Tensor  # their labels on [0, 1]
    prompts: list[str]
    crops: Callable[[], CharacterCrops]  # the clips' tracked character crops (fine-tuned BLIP)
    jitter: float


def character_contrastive(batch: LabelledBatch) -> torch.Tensor:
    """BLIP learns to tie a character's mask crops to its gallery entry (``contrastive_loss``)."""
    return batch.dimension.contrastive_loss(batch.crops(), batch.targets, jitter=batch.jitter)


def text_contrastive(batch: LabelledBatch) -> torch.Tensor:
    """The video and text towers learn to match a clip to its prompt, weighted by the label."""
    return batch.dimension.contrastive_loss(batch.values, batch.prompts, batch.targets)


# Losses a dimension adds to the regression loss when its encoders are fine-tuned on labelled clips
# (weighted by its ``contrastive_weight``); a dimension not named here adds none.
AUXILIARY_LOSSES: dict[str, Callable[[LabelledBatch], torch.Tensor]] = {
    "character_consistency": character_contrastive,
    "text_consistency": text_contrastive,
}


def regression_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE between the rewards ``sigmoid(logits)`` and the labels on [0, 1]."""
    return F.mse_loss(torch.sigmoid(logits.float()), targets.float())


def _my_share(count: int, rank: int, processes: int) -> list[int]:
    """Positions of a global batch of ``count`` rows whose loss this process takes."""
    return list(range(rank, count, processes))


def _sum_across_processes(tensors: Sequence[torch.Tensor]) -> None:
    """All-reduce (sum) in place: the gradients of every process's share add up to the global
    batch's, and the loss shares to its loss."""
    for tensor in tensors:
        torch.distributed.all_reduce(tensor)


def _batch_rows(order: torch.Tensor, step: int, size: int) -> list[int]:
    """The ``step``-th batch of ``order``; a list shorter than the epoch wraps around."""
    start = (step * size) % len(order)
    return order[start : start + size].tolist()


def check_comparisons(
    comparisons: Sequence[Comparison], items: Sequence[RewardItem], config: RewardTrainConfig
) -> None:
    """Judgements must name known dimensions and clips of the items, on their clips' side of the
    split; ``pairs`` and ``joint`` need training judgements on every trained dimension."""
    split = {item.clip_id: item.split for item in items}
    known = {*DIMENSION_KEYS, "overall"}
    for c in comparisons:
        if c.dimension not in known:
            raise ValueError(f"judgement on unknown dimension {c.dimension!r}")
        for clip_id in (c.clip_a, c.clip_b):
            if clip_id not in split:
                raise ValueError(f"a judgement names clip {clip_id}, which is not a training item")
            if split[clip_id] != c.split:
                raise ValueError(
                    f"a judgement on clip {clip_id} is in {c.split} but the clip is in "
                    f"{split[clip_id]}: a judged pair must lie on one side of the split"
                )
    if config.objective == "regression":
        return
    counts = {
        key: sum(c.split == "train" and c.dimension == key for c in comparisons)
        for key in config.dimensions
    }
    empty = [key for key, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"objective {config.objective} needs training judgements on every trained dimension; "
            f"none on {', '.join(empty)} (train judgements per dimension: {counts})"
        )


def refuse_on_processes(config: RewardTrainConfig, processes: int) -> None:
    """ValueError for a run that is not exact on ``processes`` processes yet
    (``RewardTrainConfig.refusal_on_processes``)."""
    refusal = config.refusal_on_processes(processes)
    if refusal:
        raise ValueError(refusal)


def train_reward(
    items: Sequence[RewardItem],
    config: RewardTrainConfig,
    output_dir: str | Path,
    on_progress: Progress | None = None,
    *,
    gallery: dict | None = None,
    comparisons: Sequence[Comparison] = (),
) -> TrainResult:
    """Train heads (and, per dimension, encoders) on the train split, evaluate on the test split,
    save checkpoints. ``gallery``: character id -> reference image paths, for items that carry a
    ``character_id`` (character consistency compares the tracked crops with that character).
    ``comparisons``: the A/B/tie judgements between items; ``pairs`` and ``joint`` learn from the
    train split's, and every objective is evaluated on the test split's."""
    if config.preset == "anisora":  # the released models: their own loader, heads and objectives
        if config.objective != "regression":
            raise ValueError("the anisora preset trains its released objectives: regression only")
        return TrainResult(**train_anisora(items, config, output_dir, on_progress, gallery=gallery))
    started = time.monotonic()
    check_comparisons(comparisons, items, config)
    uses_labels = config.objective in ("regression", "joint")
    uses_pairs = config.objective in ("pairs", "joint")
    report = on_progress or (lambda step, total, metrics, message: None)
    torch.manual_seed(config.seed)

    # --- data --------------------------------------------------------------------------------
    device = pick_device(config.device)
    mixed_precision = config.mixed_precision
    if mixed_precision == "auto":
        mixed_precision = "bf16" if device == "cuda" else "no"
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    processes, rank = accelerator.num_processes, accelerator.process_index
    if not accelerator.is_main_process:
        report = lambda step, total, metrics, message: None  # noqa: E731 - the main one reports
    preset = get_preset(config.preset)
    finetuned = config.finetuned_dimensions()
    refuse_on_processes(config, processes)
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

    def steps_per_epoch(key: str, clips: int, judgements: Sequence[Comparison]) -> int:
        """Batches per epoch: a pass over the longer of the labelled clips and the judgements."""
        n_pairs = sum(c.split == "train" and c.dimension == key for c in judgements)
        longest = max(clips if uses_labels else 0, n_pairs if uses_pairs else 0)
        return -(-longest // config.batch_size)

    n_train = sum(i.split == "train" for i in items)
    total = encode_batches + sum(
        config.for_dimension(key, "epochs") * steps_per_epoch(key, n_train, comparisons)
        for key in config.dimensions
    )
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
    # Several processes: each encodes every N-th encode batch (the batches 1 process makes).
    specs = [
        item.spec
        for index, item in enumerate(items)
        if (index // config.encode_batch_size) % processes == rank
    ]
    for batch in iter_decoded_batches(
        specs,
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
    if processes > 1:  # every process gets every clip's features (fine-tuning is refused above)
        shares: list = [None] * processes
        torch.distributed.all_gather_object(shares, (cached, skipped))
        for their_cached, their_skipped in shares:
            for key, features in their_cached.items():
                cached[key].update(features)
            skipped.update(their_skipped)
        step = encode_batches
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

    # Judgements whose clips could not be decoded are dropped (and counted) with them.
    decoded = [c for c in comparisons if c.clip_a not in skipped and c.clip_b not in skipped]
    comparison_counts = {
        "train": sum(c.split == "train" for c in decoded),
        "test": sum(c.split == "test" for c in decoded),
        "left_out_undecodable": len(comparisons) - len(decoded),
    }
    if uses_pairs:
        check_comparisons(decoded, [by_id[i] for i in (*train_ids, *test_ids)], config)
    total = step + sum(
        config.for_dimension(key, "epochs") * steps_per_epoch(key, len(train_ids), decoded)
        for key in config.dimensions
    )

    def dimension_features(dimension, ids: list, live: bool) -> Features:
        """The clips' features on the device: live through a fine-tuned encoder, else cached."""
        if live:
            values, mask = live_features(dimension, ids)
        else:
            values, mask = stack_features([cached[dimension.key][i] for i in ids])
        return values.to(accelerator.device), mask.to(accelerator.device)

    # --- training: one loop per dimension ------------------------------------------------------
    losses: dict[str, list[float]] = {}
    tie_parameters: dict[str, dict] = {}
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
        pairs = [c for c in decoded if c.split == "train" and c.dimension == key]
        tie = TieParameter(config.tie_model).to(accelerator.device) if uses_pairs else None
        if tie is not None:
            param_groups.append(
                {
                    "params": list(tie.parameters()),
                    "lr": config.for_dimension(key, "learning_rate"),
                    "weight_decay": 0.0,
                }
            )
        auxiliary = AUXILIARY_LOSSES.get(key) if finetune and uses_labels else None
        contrastive_weight = config.for_dimension(key, "contrastive_weight")
        epochs = config.for_dimension(key, "epochs")
        batches = steps_per_epoch(key, len(train_ids), decoded)
        optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
        targets = torch.tensor([by_id[i].targets()[key] for i in train_ids])
        pair_choices = choice_indices([c.choice for c in pairs])
        losses[key] = []
        dimension.train()
        for epoch in range(epochs):
            clip_order = torch.randperm(len(train_ids), generator=generator)
            pair_order = torch.randperm(len(pairs), generator=generator) if uses_pairs else None
            epoch_loss, seen = 0.0, 0
            for batch in range(batches):
                loss = torch.zeros((), device=accelerator.device)
                with accelerator.autocast():
                    if uses_labels:
                        rows = _batch_rows(clip_order, batch, config.batch_size)
                        batch_ids = [train_ids[r] for r in rows]
                        values, mask = dimension_features(dimension, batch_ids, finetune)
                        batch_targets = targets[rows].to(accelerator.device)
                        logits = dimension.head(values, mask)  # all rows: the 1-process dropout
                        mine = _my_share(len(rows), rank, processes)
                        loss = loss + (
                            regression_loss(logits[mine], batch_targets[mine])
                            * (len(mine) / len(rows))
                            if mine
                            else logits.sum() * 0
                        )
                        if auxiliary is not None and contrastive_weight:
                            loss = loss + contrastive_weight * auxiliary(
                                LabelledBatch(
                                    dimension,
                                    values,
                                    targets[rows],
                                    [by_id[i].prompt for i in batch_ids],
                                    lambda ids=batch_ids: cached_crops(ids),
                                    config.contrastive_jitter,
                                )
                            )
                    if uses_pairs:
                        pair_rows = _batch_rows(pair_order, batch, config.batch_size)
                        batch_pairs = [pairs[r] for r in pair_rows]
                        # each clip's features once, however many of the batch's pairs it is in
                        clip_ids = list(
                            dict.fromkeys(x for c in batch_pairs for x in (c.clip_a, c.clip_b))
                        )
                        row_of = {clip_id: row for row, clip_id in enumerate(clip_ids)}
                        logits = dimension.head(*dimension_features(dimension, clip_ids, finetune))
                        mine = _my_share(len(batch_pairs), rank, processes)
                        pair_loss = (
                            comparison_loss(
                                logits[[row_of[batch_pairs[r].clip_a] for r in mine]],
                                logits[[row_of[batch_pairs[r].clip_b] for r in mine]],
                                pair_choices[[pair_rows[r] for r in mine]].to(accelerator.device),
                                tie(),
                                model=config.tie_model,
                            )
                            * (len(mine) / len(batch_pairs))
                            if mine
                            else (logits.sum() + tie().sum()) * 0
                        )
                        weight = config.pair_weight if uses_labels else 1.0
                        loss = loss + weight * pair_loss
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if processes > 1:
                    loss = loss.detach().clone()
                    _sum_across_processes(
                        [
                            *(
                                p.grad
                                for group in param_groups
                                for p in group["params"]
                                if p.grad is not None
                            ),
                            loss,
                        ]
                    )
                optimizer.step()
                size = len(rows) if uses_labels else len(pair_rows)
                epoch_loss += loss.item() * size
                seen += size
                step += 1
                report(step, total, {}, "")
            losses[key].append(epoch_loss / seen)
            report(
                step,
                total,
                {f"{key}/loss": losses[key][-1]},
                f"{key} epoch {epoch + 1}/{epochs} loss {losses[key][-1]:.4f}",
            )
        if tie is not None:
            tie_parameters[key] = tie.describe()
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

    def result(metrics: dict, evaluation: list) -> TrainResult:
        return TrainResult(
            str(output_dir),
            metrics,
            evaluation,
            losses,
            skipped,
            len(train_ids),
            len(test_ids),
            time.monotonic() - started,
            comparison_counts,
            tie_parameters,
        )

    if clip_cache is not None:
        clip_cache.close()
    if not accelerator.is_main_process:  # the main process evaluates and writes the model
        accelerator.wait_for_everyone()
        return result({}, [])

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
        metrics, evaluation = evaluate_held_out(predicted, by_id, test_ids)
        if comparisons:  # every objective is measured on the held-out judgements
            by_clip = {key: dict(zip(test_ids, predicted[key], strict=True)) for key in predicted}
            held_out = [c for c in decoded if c.split == "test"]
            for key, figures in evaluate_comparisons(by_clip, held_out).items():
                metrics[key].update(figures)
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
        extra_config={
            "train_config": train_config,
            "trained_dimensions": list(config.dimensions),
            "tie_parameters": tie_parameters,
        },
    )
    (output_dir / "evaluation.json").write_text(
        json.dumps(
            {
                "metrics": metrics,
                "evaluation": evaluation,
                "losses": losses,
                "skipped": skipped,
                "comparisons": comparison_counts,
                "tie_parameters": tie_parameters,
            },
            indent=1,
        )
    )
    report(total, total, {}, f"saved to {output_dir}")
    accelerator.wait_for_everyone()
    return result(metrics, evaluation)
