"""Start AnimeReward from Bilibili's released models: evaluate them on a LabelHub snapshot's
held-out split, and (default) train their heads on its train split with the release's objectives.

Read top to bottom: model (the release, ``AnisoraReward.from_release``) -> data (each clip decoded
at its source resolution, one batch at a time; only the heads' inputs are kept, a few KB a clip,
so host memory does not grow with the clips' size) -> heads, one loop per dimension -> evaluation
-> checkpoint (reward_config.json naming the release folder + the trained heads).

Heads (``release_finetune="heads"``): the Idefics2 regressors' linear ``score`` on their last
hidden state, trained with MSE on the 0-100 scale (Mantis' regression objective); the BLIP
consistency models' ``img_proj``, ``img_key_proj`` and ``head_diff``, trained with L1 between the
sigmoid and the label (the release's ``forward``). Motion (ActionCLIP, zero-shot prompts) and
character (recogniser + gallery) have no head and stay as released. Targets are the label means
mapped to [0, 1], ``(mean - 1) / 4``.

Full (``release_finetune="full"``): as heads, and the BLIP consistency models' ViT (and BERT for
text) train with their heads on the same L1 objective at ``encoder_learning_rate``. Their frames
(224 px, uint8, as the release feeds them) wait in a disk cache between epochs, not in memory.

LoRA (``release_finetune="lora"``): as heads, and peft LoRA adapters (rank ``release_lora_rank``)
on the q/k/v/o projections of the two Idefics2 regressors' language model train with their
``score`` heads on the regression objective at ``encoder_learning_rate``; the 8B base weights
stay as released. Their inputs (the sampled frames at source resolution, uint8) wait in the
disk cache; the adapters are saved beside the model (``<dimension>/lora.safetensors``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from labelhub.devices import pick_device
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.progress import Progress

from ..config import RewardTrainConfig
from ..evaluate import evaluate_held_out
from ..frames import NATIVE, FrameCache, iter_decoded_batches
from . import preprocess as pre
from .layout import HEAD_DIMENSIONS
from .preprocess import regression_reward
from .reward import AnisoraReward

REGRESSORS = ("visual_smoothness", "visual_appeal")
BLIP_DIMENSIONS = ("image_consistency", "text_consistency")


def head_loss(key: str, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The release's objective per head: MSE on 0-100 (regressors), L1 on [0, 1] (BLIP)."""
    if key in REGRESSORS:
        return F.mse_loss(100 * predicted, 100 * target)
    return (predicted - target).abs().mean()


def train_anisora(
    items: Sequence,
    config: RewardTrainConfig,
    output_dir: str | Path,
    on_progress: Progress | None = None,
    *,
    gallery: dict | None = None,
    model: AnisoraReward | None = None,
) -> dict:
    """Evaluate (and by default fine-tune the heads of) the released models on ``items``; the
    fields of ``train.TrainResult`` (``train.train_reward`` hands the anisora preset here).
    ``model``: the released models already loaded (``from_release``), trained in place."""
    started = time.monotonic()
    report = on_progress or (lambda step, total, metrics, message: None)
    torch.manual_seed(config.seed)

    # --- model ---------------------------------------------------------------------------------
    device = pick_device(config.device)
    use_bf16 = config.mixed_precision == "bf16" or (
        config.mixed_precision == "auto" and device == "cuda"
    )
    if model is None:
        model = AnisoraReward.from_release(
            config.release_dir,
            sam_source=config.encoder_sources.get("sam", ""),
            device=device,
            dtype=torch.bfloat16 if use_bf16 else torch.float32,
        )
    if gallery:
        model.set_gallery(gallery)
    tuned = (
        [k for k in HEAD_DIMENSIONS if k in config.dimensions]
        if config.release_finetune != "none"
        else []
    )
    whole = [k for k in BLIP_DIMENSIONS if k in tuned] if config.release_finetune == "full" else []
    adapted = [k for k in REGRESSORS if k in tuned] if config.release_finetune == "lora" else []
    frame_cache = (
        FrameCache(Path(output_dir).parent / f".{Path(output_dir).name}-frames")
        if whole or adapted
        else None
    )

    # --- data: each clip decoded once at source resolution, only the heads' inputs kept ---------
    by_id = {item.clip_id: item for item in items}
    epochs = {key: config.for_dimension(key, "epochs") for key in tuned}
    n_train = sum(i.split == "train" for i in items)
    total = len(items) + sum(e * -(-n_train // config.batch_size) for e in epochs.values())
    step = 0
    head_inputs: dict[str, dict] = {key: {} for key in HEAD_DIMENSIONS}
    fixed: dict[str, dict] = {"visual_motion": {}, "character_consistency": {}}
    skipped: dict = {}
    report(step, total, {}, f"reading {len(items)} clips with the released models")
    for batch in iter_decoded_batches(
        [i.spec for i in items],
        size=NATIVE,
        batch_size=config.encode_batch_size,
        workers=config.decode_workers,
    ):
        skipped.update(batch.errors)
        step += len(batch.errors)
        for spec, clip in zip(
            batch.specs, (batch.inputs.native if batch.inputs else []), strict=True
        ):
            features = model.features(clip.frames, clip.condition, spec.prompt)
            if whole:  # the BLIP models' inputs, for training them end to end
                frame_cache.put(
                    spec.clip_id,
                    {
                        "frames": pre.resize_224([pre.to_pil(f) for f in clip.frames]),
                        "key": pre.resize_224([pre.to_pil(clip.condition)]),
                    },
                )
            elif adapted:  # the regressors' inputs: their processor takes the source frames
                frame_cache.put(spec.clip_id, {"native": clip.frames})
            for key in HEAD_DIMENSIONS:
                head_inputs[key][spec.clip_id] = features[key]
            fixed["visual_motion"][spec.clip_id] = model.motion_reward(features["pixels"])
            fixed["character_consistency"][spec.clip_id] = model.character_reward(
                clip.frames, clip.condition, clip.reference
            )
            step += 1
            report(step, total, {}, "")
    train_ids = [i.clip_id for i in items if i.split == "train" and i.clip_id not in skipped]
    test_ids = [i.clip_id for i in items if i.split == "test" and i.clip_id not in skipped]
    if tuned and len(train_ids) < 2:
        raise ValueError(f"need at least 2 decodable training clips, have {len(train_ids)}")

    def blip_inputs(key: str, clip_id) -> tuple[torch.Tensor, torch.Tensor | dict]:
        """A cached clip's normalised frames and key (image or prompt tokens) for a BLIP model."""
        cached = frame_cache.get(clip_id)
        dev = model._device()
        frames = pre.standardise(cached["frames"].to(dev))
        if key == "image_consistency":
            return frames, pre.standardise(cached["key"].to(dev))
        tokens = model.bert_tokenizer(
            [by_id[clip_id].prompt],
            padding="max_length",
            truncation=True,
            max_length=30,
            return_tensors="pt",
        )
        return frames, {k: v.to(dev) for k, v in tokens.items()}

    def lora_hidden(key: str, clip_id) -> torch.Tensor:
        """A cached clip's last hidden state through a LoRA-adapted regressor, (1, D)."""
        return model.last_hidden(key, frame_cache.get(clip_id)["native"], by_id[clip_id].prompt)

    # --- heads (and, full, the BLIP models): one loop per dimension --------------------------------
    losses: dict[str, list[float]] = {}
    for key in tuned:
        generator = torch.Generator().manual_seed(
            config.seed * len(DIMENSION_KEYS) + DIMENSION_KEYS.index(key)
        )
        heads = model.head_modules(key)
        heads.float().requires_grad_(True).train()
        groups = [
            {"params": list(heads.parameters()), "lr": config.for_dimension(key, "learning_rate")}
        ]
        blip = getattr(model, key) if key in whole else None
        encoder_params = []
        if blip is not None:
            blip.float().requires_grad_(True).train()
            head_ids = {id(p) for p in heads.parameters()}
            encoder_params = [p for p in blip.parameters() if id(p) not in head_ids]
        elif key in adapted:  # base weights frozen (from_release), only the adapters learn
            encoder_params = model.add_lora(key, config.release_lora_rank)
            for p in encoder_params:
                p.requires_grad_(True)
        if encoder_params:
            groups.append(
                {
                    "params": encoder_params,
                    "lr": config.for_dimension(key, "encoder_learning_rate"),
                }
            )
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        values = torch.stack([head_inputs[key][i] for i in train_ids]).float()
        targets = torch.tensor([by_id[i].targets()[key] for i in train_ids])
        losses[key] = []
        for epoch in range(epochs[key]):
            order = torch.randperm(len(train_ids), generator=generator)
            epoch_loss = 0.0
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size]
                if blip is not None:  # end to end through the ViT (and BERT)
                    predicted = torch.cat(
                        [blip.score(*blip_inputs(key, train_ids[r])) for r in rows.tolist()]
                    )
                elif key in adapted:  # end to end through the LoRA-adapted language model
                    predicted = torch.cat(
                        [
                            model.heads_reward(key, lora_hidden(key, train_ids[r]))
                            for r in rows.tolist()
                        ]
                    )
                else:
                    predicted = model.heads_reward(key, values[rows].to(heads_device(heads)))
                loss = head_loss(key, predicted.float(), targets[rows].to(predicted.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item() * len(rows)
                step += 1
                report(step, total, {}, "")
            losses[key].append(epoch_loss / len(train_ids))
            report(
                step,
                total,
                {f"{key}/loss": losses[key][-1]},
                f"{key} epoch {epoch + 1}/{epochs[key]} loss {losses[key][-1]:.4f}",
            )
        heads.requires_grad_(False).eval()
        if key in adapted:  # the adapters changed the held-out clips' last hidden states
            for p in encoder_params:
                p.requires_grad_(False)
            with torch.no_grad():
                for clip_id in test_ids:
                    head_inputs[key][clip_id] = lora_hidden(key, clip_id)[0].float().cpu()
        if blip is not None:  # the encoders changed: the held-out clips' head inputs too
            blip.requires_grad_(False).eval()
            with torch.no_grad():
                for clip_id in test_ids:
                    frames, other = blip_inputs(key, clip_id)
                    if key == "image_consistency":
                        other = blip.visual_encoder(pixel_values=other).last_hidden_state[0, 0]
                    else:
                        other = blip.text_encoder(**other).last_hidden_state[0, 0]
                    head_inputs[key][clip_id] = torch.cat(
                        [blip.video_embedding(frames), other]
                    ).cpu()
    if frame_cache is not None:
        frame_cache.close()
    model.finetune, model.tuned_heads, model.tuned_models = config.release_finetune, tuned, whole

    # --- evaluation on the held-out split ------------------------------------------------------
    evaluation, metrics = [], {}
    if test_ids:
        predicted: dict[str, list[float]] = {}
        with torch.no_grad():
            for key in HEAD_DIMENSIONS:
                values = torch.stack([head_inputs[key][i] for i in test_ids])
                rewards = model.heads_reward(key, values.to(model._device())).float().cpu()
                if key in REGRESSORS:
                    rewards = torch.tensor([regression_reward(100 * r) for r in rewards.tolist()])
                predicted[key] = rewards.clamp(0, 1).tolist()
        for key, values in fixed.items():
            predicted[key] = [values[i] for i in test_ids]
        predicted = {key: predicted[key] for key in DIMENSION_KEYS}
        predicted["overall"] = [
            sum(predicted[key][row] for key in DIMENSION_KEYS) / len(DIMENSION_KEYS)
            for row in range(len(test_ids))
        ]
        metrics, evaluation = evaluate_held_out(predicted, by_id, test_ids)

    # --- checkpoint ------------------------------------------------------------------------------
    output_dir = Path(output_dir)
    train_config = asdict(config)
    train_config["dimensions"] = list(config.dimensions)
    model.save(
        output_dir,
        extra_config={"train_config": train_config, "trained_dimensions": list(tuned)},
    )
    (output_dir / "evaluation.json").write_text(
        json.dumps(
            {"metrics": metrics, "evaluation": evaluation, "losses": losses, "skipped": skipped},
            indent=1,
        )
    )
    report(total, total, {}, f"saved to {output_dir}")
    return {
        "output_dir": str(output_dir),
        "metrics": metrics,
        "evaluation": evaluation,
        "losses": losses,
        "skipped": skipped,
        "train_clips": len(train_ids),
        "test_clips": len(test_ids),
        "seconds": time.monotonic() - started,
    }


def heads_device(heads: torch.nn.Module) -> torch.device:
    return next(heads.parameters()).device
