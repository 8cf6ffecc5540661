"""Launching, cancelling and resuming the alignment loop's runs (pairs, GAPO/DPO/SFT, generation).

Parameters are validated here, once, with clear errors; the validated values are what the run row
stores and what its task reads. The task is enqueued on the ``gpu`` queue after commit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Round
from labelhub.errors import ServiceError
from runs import services as runs
from runs.models import Run
from scoring.models import RewardModel
from training.alignment.config import LORA_WEIGHT_NAME, SAMPLERS, SHAPES, TrainConfig
from training.alignment.release import GeneratorFolderError, check_generator_folder
from training.models import PolicyCheckpoint, PreferencePair

Kind = Run.Kind
GENERATION_CHUNK_CONDITIONS = 2  # conditions per chunk (K candidates each): minutes on an H100
CHUNK_ATTEMPTS = 3  # claims a chunk gets before its run fails (a resume allows as many more)
TRAINING_KINDS = (Kind.GAPO, Kind.DPO, Kind.SFT)
LAUNCHABLE_KINDS = (Kind.PAIRS, *TRAINING_KINDS, Kind.GENERATION)
# Trainer fields an admin may set from the launch form or API; the rest are set by the service.
TRAINER_FIELDS = (
    "beta",
    "alpha",
    "lora_rank",
    "lora_alpha",
    "learning_rate",
    "weight_decay",
    "max_steps",
    "batch_pairs",
    "max_grad_norm",
    "seed",
    "checkpoint_every",
    "keep_last_checkpoints",
    "keep_best_checkpoint",
    "log_every",
    "image_dropout",
    "gradient_checkpointing",
    "mixed_precision",
    "gradient_accumulation_steps",
    "lr_scheduler",
    "lr_warmup_steps",
    "validation_share",
    "text_dropout",
)


class InvalidParams(ServiceError):
    """Launch parameters that do not make a valid run; the message says which and why."""


TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# The type a trainer field takes, from its default (gradient_checkpointing: None = auto, a bool).
TRAINER_TYPES = {
    f.name: bool if f.default is None else type(f.default)
    for f in fields(TrainConfig)
    if f.name in TRAINER_FIELDS
}


def _trainer_value(name: str, value):
    """A trainer field's value as its type: the launch form and the CLI send strings."""
    kind = TRAINER_TYPES[name]
    if name == "gradient_checkpointing" and value in (None, "", "auto"):
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in TRUE + FALSE:
            return str(value).strip().lower() in TRUE
        raise InvalidParams(f"{name} must be true or false, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise InvalidParams(f"{name} must be text, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParams(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidParams(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidParams(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if not number.is_integer():
            raise InvalidParams(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return number


def _pop(params: dict, key: str, kind: type, default=None, *, required: bool = False):
    value = params.pop(key, default)
    if value in (None, ""):
        if required:
            raise InvalidParams(f"{key} is required")
        return default
    try:
        return kind(value)
    except (TypeError, ValueError) as error:
        raise InvalidParams(f"{key} must be {kind.__name__}, got {value!r}") from error


def _pair_source(params: dict) -> dict:
    round_id = _pop(params, "round_id", int, required=True)
    if not Round.objects.filter(pk=round_id).exists():
        raise InvalidParams(f"round {round_id} does not exist")
    origin = _pop(params, "origin", str, PreferencePair.Origin.REWARD_MODEL)
    if origin not in PreferencePair.Origin.values:
        raise InvalidParams(
            f"origin must be one of {', '.join(PreferencePair.Origin.values)}, got {origin!r}"
        )
    reward_model_id = _pop(params, "reward_model_id", int)
    if origin == PreferencePair.Origin.REWARD_MODEL:
        if reward_model_id is None:
            raise InvalidParams("reward_model_id is required for pairs from reward-model scores")
        if not RewardModel.objects.filter(pk=reward_model_id).exists():
            raise InvalidParams(f"reward model {reward_model_id} does not exist")
    return {"round_id": round_id, "origin": origin, "reward_model_id": reward_model_id}


def validate_params(kind: str, params: dict) -> dict:
    """Clean launch parameters for ``kind``; raises InvalidParams naming the bad field."""
    if kind not in LAUNCHABLE_KINDS:
        raise InvalidParams(f"kind must be one of {', '.join(LAUNCHABLE_KINDS)}, got {kind!r}")
    params = dict(params or {})
    if kind != Kind.PAIRS:
        _check_generator()
    if kind == Kind.PAIRS:
        cleaned = _pair_source(params)
        cleaned["min_gap"] = _pop(params, "min_gap", float, 0.0)
        if not 0 <= cleaned["min_gap"] <= 1:
            raise InvalidParams("min_gap must be in [0, 1]")
    elif kind in TRAINING_KINDS:
        cleaned = _pair_source(params)
        if not PreferencePair.objects.filter(
            round_id=cleaned["round_id"], origin=cleaned["origin"]
        ).exists():
            raise InvalidParams(
                f"round {cleaned['round_id']} has no {cleaned['origin']} pairs yet; build pairs first"
            )
        cleaned["checkpoint_name"] = _pop(params, "checkpoint_name", str, "")
        if (
            cleaned["checkpoint_name"]
            and PolicyCheckpoint.objects.filter(name=cleaned["checkpoint_name"]).exists()
        ):
            raise InvalidParams(
                f"a policy checkpoint named {cleaned['checkpoint_name']!r} exists already"
            )
        # The next round of the loop starts from the policy that generated its candidates.
        cleaned["init_checkpoint_id"] = _pop(params, "init_checkpoint_id", int)
        # Its LoRA lives in storage; the job fetches it on the GPU host (TrainConfig.init_lora).
        if cleaned["init_checkpoint_id"] is not None:
            parent = PolicyCheckpoint.objects.filter(pk=cleaned["init_checkpoint_id"]).first()
            if parent is None:
                raise InvalidParams(
                    f"policy checkpoint {cleaned['init_checkpoint_id']} does not exist"
                )
            if not default_storage.exists(f"{parent.lora_path}/{LORA_WEIGHT_NAME}"):
                raise InvalidParams(
                    f"init_lora has no {LORA_WEIGHT_NAME}: policy checkpoint {parent.pk} "
                    f"({parent.lora_path})"
                )
        trainer = {k: _trainer_value(k, params.pop(k)) for k in TRAINER_FIELDS if k in params}
        try:
            config = TrainConfig(
                output_dir="-",
                loss_type=kind,
                preset=settings.LABELHUB_GENERATOR_PRESET,
                model_path=settings.LABELHUB_COGVIDEOX_PATH,
                **trainer,
            )
        except (TypeError, ValueError) as error:
            raise InvalidParams(str(error).removeprefix("invalid training config: ")) from error
        cleaned["trainer"] = {
            k: v for k, v in asdict(config).items() if k not in ("output_dir", "resume_from")
        }
        cleaned["gpus"] = validate_gpus(params.pop("gpus", None))
    else:  # generation
        source_round_id = _pop(params, "source_round_id", int, required=True)
        if not Round.objects.filter(pk=source_round_id).exists():
            raise InvalidParams(f"round {source_round_id} does not exist")
        checkpoint_id = _pop(params, "checkpoint_id", int)
        if (
            checkpoint_id is not None
            and not PolicyCheckpoint.objects.filter(pk=checkpoint_id).exists()
        ):
            raise InvalidParams(f"policy checkpoint {checkpoint_id} does not exist")
        cleaned = {
            "source_round_id": source_round_id,
            "target_round": _pop(params, "target_round", str, required=True).strip(),
            "checkpoint_id": checkpoint_id,
            "candidates_per_condition": _pop(params, "candidates_per_condition", int, 4),
            "base_seed": _pop(params, "base_seed", int, 0),
            "inference_steps": _pop(params, "inference_steps", int),
            "guidance_scale": _pop(params, "guidance_scale", float),
            "preset": settings.LABELHUB_GENERATOR_PRESET,
            # Recorded on the run: the preset's default (the release's DPM++ with dynamic CFG for
            # the 5B preset) unless the admin picks one.
            "sampler": _pop(
                params,
                "sampler",
                str,
                SHAPES.get(settings.LABELHUB_GENERATOR_PRESET, SHAPES["tiny"]).sampler,
            ),
            # Conditions per chunk: each chunk is a gpu task of its own (runs.fanout).
            "chunk_conditions": _pop(params, "chunk_conditions", int, GENERATION_CHUNK_CONDITIONS),
            "chunk_attempts": _pop(params, "chunk_attempts", int, CHUNK_ATTEMPTS),
        }
        if cleaned["sampler"] not in SAMPLERS:
            raise InvalidParams(
                f"sampler must be one of {', '.join(SAMPLERS)}, got {cleaned['sampler']!r}"
            )
        if not 1 <= cleaned["candidates_per_condition"] <= 64:
            raise InvalidParams("candidates_per_condition must be in 1..64")
        if not 1 <= cleaned["chunk_conditions"] <= 10_000:
            raise InvalidParams("chunk_conditions must be in 1..10000")
        if not 1 <= cleaned["chunk_attempts"] <= 10:
            raise InvalidParams("chunk_attempts must be in 1..10")
        if cleaned["inference_steps"] is not None and cleaned["inference_steps"] < 1:
            raise InvalidParams("inference_steps must be >= 1")
        target = Round.objects.filter(name=cleaned["target_round"]).first()
        if target is not None and target.status != Round.Status.OPEN:
            raise InvalidParams(f"round {cleaned['target_round']!r} is closed")
    if params:
        raise InvalidParams(f"unknown parameter(s) for {kind}: {', '.join(sorted(params))}")
    return cleaned


def _check_generator() -> None:
    """A full preset's weights folder is checked at launch, so a wrong LABELHUB_COGVIDEOX_PATH (an
    incomplete download, CogVideoX 1.5, a text-to-video model, a SAT checkpoint) fails here with
    what is wrong, not in a GPU worker after the queue."""
    if settings.LABELHUB_GENERATOR_PRESET == "tiny":
        return
    try:
        check_generator_folder(settings.LABELHUB_COGVIDEOX_PATH)
    except GeneratorFolderError as error:
        raise InvalidParams(f"LABELHUB_COGVIDEOX_PATH: {error}") from None


def validate_gpus(value) -> int:
    """GPUs a training run asks for (``runs.services.parse_gpus``); InvalidParams if not valid."""
    try:
        return runs.parse_gpus(value)
    except ValueError as error:
        raise InvalidParams(str(error)) from None


def launch_run(*, kind: str, params: dict, created_by) -> Run:
    """Validate, create a queued run and enqueue its task on the gpu queue (after commit)."""
    cleaned = validate_params(kind, params)
    try:
        return runs.launch(
            kind=kind,
            params=cleaned,
            created_by=created_by,
            output_name=checkpoint_output_name(cleaned),
        )
    except runs.NameTaken as error:
        raise InvalidParams(str(error), code="conflict") from error


def checkpoint_output_name(params: dict) -> str:
    """The reserved output name of a training run that names its policy checkpoint."""
    name = params.get("checkpoint_name", "")
    return f"checkpoint:{name}" if name else ""


def cancel(*, run_id: int) -> Run:
    """Cancel a queued run now, a running one at its next progress report."""
    return runs.request_cancel(run_id)


FANNED_OUT_KINDS = (Kind.GENERATION, Kind.SCORING, Kind.GENERATION_CHUNK, Kind.SCORING_CHUNK)


def resume(*, run_id: int, created_by, max_steps: int | None = None) -> Run:
    """Continue a failed or cancelled run. A training run: a new run from its last checkpoint.
    A generation or scoring run (or one of its chunks, alone): the same row queued again; its
    chunks that succeeded are kept and the rest make only what is still missing."""
    with transaction.atomic():
        old = Run.objects.select_for_update().get(pk=run_id)
        if old.kind in FANNED_OUT_KINDS:
            if old.status not in (Run.Status.FAILED, Run.Status.CANCELLED):
                raise InvalidParams(
                    f"run {old.pk} is {old.status}; only failed or cancelled runs can be resumed"
                )
            return runs.requeue(old.pk)
        if old.kind not in TRAINING_KINDS:
            raise InvalidParams(
                "only GAPO/DPO/SFT, generation and scoring runs can be resumed; launch other "
                "kinds again"
            )
        if old.status not in (Run.Status.FAILED, Run.Status.CANCELLED):
            raise InvalidParams(
                f"run {old.pk} is {old.status}; only failed or cancelled runs can be resumed",
                code="conflict",
            )
        if not old.checkpoint_path:
            raise InvalidParams(f"run {old.pk} wrote no checkpoint; launch it again instead")
        params = {**old.params, "trainer": dict(old.params["trainer"])}
        params["resume_from"] = old.checkpoint_path
        params["output_dir"] = old.params.get("output_dir") or old.artifacts.get("output_dir", "")
        if max_steps is not None:
            params["trainer"]["max_steps"] = max_steps
            try:
                TrainConfig(output_dir="-", **params["trainer"])  # still a valid config
            except (TypeError, ValueError) as error:
                raise InvalidParams(str(error).removeprefix("invalid training config: ")) from error
        return runs.launch(
            kind=old.kind,
            params=params,
            created_by=created_by,
            resumed_from=old,
            output_name=checkpoint_output_name(params),
        )


TRAINER_HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig) if f.name in TRAINER_FIELDS}
