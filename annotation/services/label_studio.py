"""Label Studio projects come in: a Label Studio JSON export of video tasks becomes clips of a round,
their ``Rating`` annotations our six-dimension ratings, and ``Pairwise``/``Choices`` annotations
A/B judgements, annotators matched or created (inactive) by e-mail.

The export is the list Label Studio's "JSON" export writes: tasks with ``data`` (the fields the
project's labeling config names: ``$video``, ``$prompt``, ...) and ``annotations``, each with
``completed_by`` (``{"email": ...}``), ``result`` (``{"type": "rating", "from_name": ...,
"value": {"rating": 4}}``, ``{"type": "pairwise", "value": {"selected": "left"}}``,
``{"type": "choices", "value": {"choices": ["A"]}}``) and ``lead_time`` (seconds).

A mapping file says which task fields and control names mean what (``MAPPING_EXAMPLE``). Media:
a local-storage URL (``/data/local-files/?d=clips/a.mp4``), an upload path (``/data/upload/...``)
or a relative path is a file under the first import root; an absolute path must lie under an
import root; http(s), s3 and gs URLs are never fetched. Clips go through the manifest path
(``import_rows``: the same hostile-input rules, ingest on the default queue). Annotations are
added for clips that are ready; a task whose clips are still being ingested is reported as
waiting, and importing the same export again adds what was waiting and nothing else (clips are
matched by content hash, ratings and judgements by the Label Studio annotation id).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Clip, PairwiseJudgement, PairwiseTask, Rating, Round
from annotation.services.ingest import import_rows
from annotation.services.labels import add_rating
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import ANNOTATOR

MAPPING_EXAMPLE = {
    "video": "video",
    "prompt": "prompt",
    "image": "image",
    "character_reference": "character",
    "source": "source",
    "ratings": {
        "smoothness": "visual_smoothness",
        "motion": "visual_motion",
        "appeal": "visual_appeal",
        "text": "text_consistency",
        "image": "image_consistency",
        "character": "character_consistency",
    },
    "pair": {"a": "video_a", "b": "video_b", "choices": {"A": "a", "B": "b", "Tie": "tie"}},
}
NAMESPACE = uuid.UUID("6f1c2a52-5d0e-4a8c-9a59-3c1b7f0f2c11")  # ratings keyed by LS annotation
REMOTE_SCHEMES = ("http", "https", "s3", "gs", "azure-blob", "ftp")


class LabelStudioError(ValueError):
    """The export or the mapping as a whole cannot be read (a row's problem is that row's error)."""


class TaskError(Exception):
    """One task (or one of its annotations) cannot be imported; the rest go on."""


@dataclass
class LabelStudioReport:
    tasks: int = 0
    clips_queued: int = 0
    clips_present: int = 0
    ratings_added: int = 0
    judgements_added: int = 0
    annotators_created: int = 0
    waiting: int = 0  # tasks whose clips are still being ingested: import again to annotate them
    errors: list[tuple[object, str]] = field(default_factory=list)  # (task id, message)
    batch_id: int | None = None

    def summary(self) -> str:
        return (
            f"{self.tasks} task(s): {self.clips_queued} clip(s) queued for ingest, "
            f"{self.clips_present} already in the round, {self.ratings_added} rating(s) and "
            f"{self.judgements_added} judgement(s) added, {self.annotators_created} annotator(s) "
            f"created, {self.waiting} waiting for ingest, {len(self.errors)} error(s)"
        )


def read_mapping(text: str) -> dict:
    """A mapping file (JSON, see ``MAPPING_EXAMPLE``), checked."""
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelStudioError(f"the mapping is not JSON: {exc}") from None
    if not isinstance(mapping, dict) or not isinstance(mapping.get("prompt"), str):
        raise LabelStudioError("the mapping must be an object naming at least the 'prompt' field")
    ratings = mapping.get("ratings", {})
    if not isinstance(ratings, dict) or not set(ratings.values()) <= set(DIMENSION_KEYS):
        raise LabelStudioError(
            f"'ratings' maps Rating names to dimensions ({', '.join(DIMENSION_KEYS)})"
        )
    if ratings and set(ratings.values()) != set(DIMENSION_KEYS):
        missing = sorted(set(DIMENSION_KEYS) - set(ratings.values()))
        raise LabelStudioError(f"'ratings' must map all six dimensions; missing {missing}")
    pair = mapping.get("pair")
    if pair is not None and not (
        isinstance(pair, dict)
        and {"a", "b"} <= set(pair)
        and set(pair.get("choices", {}).values()) <= {"a", "b", "tie"}
    ):
        raise LabelStudioError("'pair' needs 'a' and 'b' fields and choices mapped to a/b/tie")
    return mapping


def read_export(text: str) -> list:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelStudioError(f"the export is not JSON: {exc}") from None
    if not isinstance(tasks, list):
        raise LabelStudioError("a Label Studio JSON export is a list of tasks")
    return tasks


def media_path(value, *, field_name: str) -> Path:
    """The local file a task's media field names, under the import roots (hostile: checked)."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"'{field_name}' is empty")
    roots = [Path(r) for r in settings.LABELHUB_IMPORT_ROOTS]
    parts = urlsplit(value)
    if parts.scheme.lower() in REMOTE_SCHEMES:
        raise TaskError(
            f"'{field_name}' {value} is a URL outside the import roots (nothing is downloaded: "
            "copy the files under an import root and export local-storage paths)"
        )
    if parts.path.startswith("/data/local-files/"):
        relative = unquote(parse_qs(parts.query).get("d", [""])[0])
        path = roots[0] / relative
    elif parts.path.startswith("/data/upload/"):
        path = roots[0] / "upload" / unquote(parts.path.removeprefix("/data/upload/"))
    elif PurePosixPath(value).is_absolute():
        path = Path(value)
    else:
        path = roots[0] / value
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise TaskError(f"'{field_name}' {value} is outside the allowed import roots")
    if not resolved.is_file():
        raise TaskError(f"'{field_name}' file not found: {value}")
    return resolved


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _Task:
    ident: object
    videos: list[Path]  # one (rated clip) or two (an A/B pair)
    row: dict  # the manifest fields shared by its videos
    annotations: list


def _parse_task(task, mapping: dict) -> _Task:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise TaskError("not a Label Studio task (no 'data' object)")
    data = task["data"]
    pair = mapping.get("pair") or {}
    if mapping.get("video") and data.get(mapping["video"]):
        videos = [media_path(data[mapping["video"]], field_name=mapping["video"])]
    elif pair and data.get(pair["a"]) and data.get(pair["b"]):
        videos = [media_path(data[pair[k]], field_name=pair[k]) for k in ("a", "b")]
    else:
        raise TaskError(
            f"unknown task shape: data has none of the mapped video fields ({sorted(data)[:8]})"
        )
    prompt = data.get(mapping["prompt"])
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError(f"'{mapping['prompt']}' (the prompt) is missing or empty")
    row = {"prompt": prompt}
    for ours in ("image", "character_reference"):
        name = mapping.get(ours)
        if name and data.get(name):
            key = "first_frame" if ours == "image" else ours
            row[key] = str(media_path(data[name], field_name=name))
    if mapping.get("source") and isinstance(data.get(mapping["source"]), str):
        row["source"] = data[mapping["source"]]
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise TaskError("'annotations' is not a list")
    return _Task(task.get("id"), videos, row, annotations)


def import_label_studio(
    *, tasks: list, mapping: dict, round_name: str, created_by=None, export_name: str = "ls.json"
) -> LabelStudioReport:
    """Import a parsed export (see the module docstring); idempotent."""
    report = LabelStudioReport(tasks=len(tasks))
    round_, _ = Round.objects.get_or_create(name=round_name)
    present = dict(
        Clip.objects.filter(round=round_).values_list("original_sha256", "pk")
    )  # sha -> clip
    parsed: list[_Task] = []
    to_import: dict[str, dict] = {}
    for task in tasks:
        try:
            item = _parse_task(task, mapping)
        except TaskError as exc:
            report.errors.append((_ident(task), str(exc)))
            continue
        parsed.append(item)
        for video in item.videos:
            sha = _sha256(video)
            if sha in present:
                report.clips_present += 1
            elif sha not in to_import:
                to_import[sha] = {**item.row, "video": str(video), "round": round_.name}
    if to_import:
        batch = import_rows(
            rows=list(to_import.values()), manifest_name=export_name, created_by=created_by
        )
        report.batch_id = batch.pk
        errors = dict(batch.rows.filter(status="error").values_list("video_path", "message"))
        report.clips_queued = len(to_import) - len(errors)
        for item in parsed:
            failed = [errors[str(v)] for v in item.videos if str(v) in errors]
            if failed:
                report.errors.append((item.ident, "; ".join(failed)))
                item.annotations = []
    apply_annotations(parsed=parsed, round_=round_, mapping=mapping, report=report)
    return report


def _ident(task) -> object:
    return task.get("id") if isinstance(task, dict) else None


def apply_annotations(
    *, parsed: list[_Task], round_: Round, mapping: dict, report: LabelStudioReport
) -> None:
    ready = {
        sha: clip
        for sha, clip in (
            (c.original_sha256, c)
            for c in Clip.objects.filter(round=round_, status=Clip.Status.READY)
        )
    }
    for item in parsed:
        if not item.annotations:
            continue
        clips = [ready.get(_sha256(v)) for v in item.videos]
        if any(c is None for c in clips):
            report.waiting += 1
            continue
        for annotation in item.annotations:
            try:
                _apply(annotation, clips, mapping, report)
            except TaskError as exc:
                report.errors.append((item.ident, str(exc)))


def _annotator(completed_by, report: LabelStudioReport):
    email = completed_by.get("email") if isinstance(completed_by, dict) else None
    if not isinstance(email, str) or "@" not in email or len(email) > 150:
        raise TaskError("annotation without the annotator's e-mail (export as JSON, not JSON_MIN)")
    email = email.strip().lower()
    users = get_user_model().objects
    user = users.filter(email__iexact=email).order_by("pk").first()
    if user is None:
        username = (
            email if not users.filter(username=email).exists() else f"ls-{uuid.uuid4().hex[:8]}"
        )
        user = users.create(username=username, email=email, is_active=False)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
        report.annotators_created += 1
    return user


def _apply(annotation, clips: list[Clip], mapping: dict, report: LabelStudioReport) -> None:
    if not isinstance(annotation, dict) or not isinstance(annotation.get("result"), list):
        raise TaskError("an annotation without a 'result' list")
    if annotation.get("was_cancelled"):
        return
    ann_id = annotation.get("id")
    user = _annotator(annotation.get("completed_by"), report)
    seconds = annotation.get("lead_time") or 0
    seconds = float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else 0.0
    if len(clips) == 1:
        _apply_rating(ann_id, annotation["result"], clips[0], user, seconds, mapping, report)
    else:
        _apply_judgement(annotation["result"], clips, user, seconds, mapping, report)


def _apply_rating(ann_id, results, clip: Clip, user, seconds, mapping, report) -> None:
    names = mapping.get("ratings") or {}
    scores = {}
    for result in results:
        if not isinstance(result, dict) or result.get("type") != "rating":
            continue
        dimension = names.get(result.get("from_name"))
        if dimension is None:
            continue
        value = (result.get("value") or {}).get("rating")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
            raise TaskError(f"rating {result.get('from_name')!r} = {value!r} is not within 1-5")
        scores[dimension] = value
    if not scores:
        return  # an annotation with no ratings (a comment, a flag): nothing to add
    missing = sorted(set(DIMENSION_KEYS) - set(scores))
    if missing:
        raise TaskError(f"annotation {ann_id}: no rating for {', '.join(missing)}")
    key = uuid.uuid5(NAMESPACE, f"{ann_id}|{user.email}|{clip.original_sha256}")
    with transaction.atomic():
        Clip.objects.select_for_update().get(pk=clip.pk)  # the rating path's lock order
        if (
            Rating.objects.filter(idempotency_key=key).exists()
            or Rating.objects.filter(clip=clip, annotator=user, is_current=True).exists()
        ):
            return
        add_rating(
            clip_id=clip.pk,
            annotator_id=user.pk,
            scores=scores,
            seconds_spent=seconds,
            idempotency_key=key,
            now=timezone.now(),
        )
    report.ratings_added += 1


def _choice(results, mapping) -> str | None:
    choices = (mapping.get("pair") or {}).get("choices", {})
    for result in results:
        if not isinstance(result, dict):
            continue
        value = result.get("value") or {}
        if result.get("type") == "pairwise":
            selected = value.get("selected")
            if selected in ("left", "right"):
                return "a" if selected == "left" else "b"
            raise TaskError(f"pairwise value {selected!r} is neither left nor right")
        if result.get("type") == "choices":
            picked = value.get("choices") or []
            if len(picked) != 1 or picked[0] not in choices:
                raise TaskError(f"choice {picked!r} is not one of {sorted(choices)}")
            return choices[picked[0]]
    return None


def _apply_judgement(results, clips: list[Clip], user, seconds, mapping, report) -> None:
    choice = _choice(results, mapping)
    if choice is None:
        return
    a, b = clips
    if a.pk == b.pk:
        raise TaskError("both sides of the pair are the same video")
    if a.condition_id != b.condition_id:
        raise TaskError(
            "the two videos are of different conditions (map the condition image field)"
        )
    # Our tasks store (clip_a, clip_b) once per pair; Label Studio's left is our a.
    if PairwiseTask.objects.filter(clip_a=b, clip_b=a).exists():
        a, b = b, a
        choice = {"a": "b", "b": "a"}.get(choice, choice)
    with transaction.atomic():
        task, _ = PairwiseTask.objects.get_or_create(
            clip_a=a,
            clip_b=b,
            defaults={"condition_id": a.condition_id, "a_on_left": True, "batch": "label-studio"},
        )
        task = PairwiseTask.objects.select_for_update().get(pk=task.pk)
        if PairwiseJudgement.objects.filter(task=task, judge=user).exists():
            return
        PairwiseJudgement.objects.create(
            task=task, judge=user, choice=choice, seconds_spent=seconds
        )
        PairwiseTask.objects.filter(pk=task.pk).update(judgement_count=F("judgement_count") + 1)
    report.judgements_added += 1
