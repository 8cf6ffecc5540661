"""The files of an export snapshot: the SQL of an exported row (built in one place), the writers
for JSONL, CSV and Parquet, and the dataset card. Plain paths in, row counts out; the
orchestration (claiming, storing, hashing, recovery) is ``annotation.services.exports``.

Rows stream out of Postgres and never sit in memory together: CSV and JSONL are a ``COPY ... TO
STDOUT`` (JSONL built by ``row_to_json``), Parquet is written one row group per block. The
grouped train/test split (``annotation.splits``) is computed on conditions (a handful of ids and
hashes per condition) and joined into the query as arrays. Files contain nothing time- or
id-dependent, so the same labels and parameters give the same bytes.
"""

from __future__ import annotations

import hmac
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from django.conf import settings
from django.db import connection

from annotation.export_params import FORMATS, SPLIT_RULE, ExportParams  # noqa: F401 (re-exported)
from annotation.models import Round
from annotation.splits import SplitItem, place_items
from labelhub.dimensions import DIMENSION_KEYS

PARQUET_BLOCK_BYTES = 4 << 20  # CSV bytes per Parquet row group (a few thousand rows)

# Column name, Arrow type, SQL expression: the one place that defines an exported label row.
LABEL_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("clip_id", pa.int64(), "c.id"),
    ("round_id", pa.int64(), "c.round_id"),
    ("round", pa.string(), "r.name"),
    ("condition_id", pa.int64(), "c.condition_id"),
    ("video", pa.string(), "c.video"),
    ("original", pa.string(), "c.original"),
    ("condition_image", pa.string(), "d.image"),
    ("character_reference", pa.string(), "d.character_reference"),
    ("character_id", pa.int64(), "d.character_id"),
    ("character", pa.string(), "coalesce(ch.name, '')"),
    ("prompt", pa.string(), "d.prompt"),
    ("source_kind", pa.string(), "c.source_kind"),
    ("source_name", pa.string(), "c.source_name"),
    ("split", pa.string(), "p.split"),
    ("group", pa.string(), "p.grp"),
    *[
        column
        for key in DIMENSION_KEYS
        for column in (
            (f"{key}_mean", pa.float64(), f"l.{key}_mean"),
            (f"{key}_std", pa.float64(), f"l.{key}_std"),
            (f"{key}_count", pa.int64(), "l.count::int8"),
        )
    ],
    ("overall", pa.float64(), "l.overall"),
    ("rating_count", pa.int64(), "l.count::int8"),
]

# An annotator's or judge's pseudonym: a keyed hash of their id (the same in both files).
_PSEUDONYM = "substr(encode(sha256(convert_to(%(salt)s || {}::text, 'UTF8')), 'hex'), 1, 16)"
RATING_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("clip_id", pa.int64(), "c.id"),
    ("round_id", pa.int64(), "c.round_id"),
    ("split", pa.string(), "p.split"),
    ("annotator", pa.string(), _PSEUDONYM.format("a.annotator_id")),
    *[(key, pa.int64(), f"a.{key}::int8") for key in DIMENSION_KEYS],
    ("seconds_spent", pa.float64(), "a.seconds_spent"),
]


# One row per judge, task and dimension (``overall`` is the judge's overall choice), choices on the
# canonical clip_a / clip_b. Only tasks whose two clips are both exported and on one side of the
# split: a pair across the split would leak test clips into training (``judged_pair_counts``).
JUDGEMENT_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("task_id", pa.int64(), "t.id"),
    ("condition_id", pa.int64(), "t.condition_id"),
    ("clip_a_id", pa.int64(), "t.clip_a_id"),
    ("clip_b_id", pa.int64(), "t.clip_b_id"),
    ("split", pa.string(), "ea.split"),
    ("group", pa.string(), "ea.grp"),
    ("judge", pa.string(), _PSEUDONYM.format("j.judge_id")),
    ("dimension", pa.string(), "v.dimension"),
    ("choice", pa.string(), "v.choice"),
]
_JUDGED_DIMENSIONS = ", ".join(
    [
        "(0, 'overall', j.choice)",
        *(
            f"({n}, '{key}', j.dimension_choices->>'{key}')"
            for n, key in enumerate(DIMENSION_KEYS, 1)
        ),
    ]
)

# The clips that are exported: labelled, in the chosen rounds, not pulled as broken. Every query
# of an export (placements, rows, ratings, split counts) is this FROM/WHERE with optional joins.
_FROM = """
    FROM annotation_clip c
    JOIN annotation_cliplabel l ON l.clip_id = c.id
    JOIN annotation_condition d ON d.id = c.condition_id
    JOIN annotation_round r ON r.id = c.round_id
    LEFT JOIN annotation_character ch ON ch.id = d.character_id"""
_PLACEMENT_JOIN = """
    JOIN unnest(%(cond_ids)s::int8[], %(splits)s::text[], %(groups)s::text[])
      AS p(condition_id, split, grp) ON p.condition_id = c.condition_id"""
_RATING_JOIN = """
    JOIN annotation_rating a ON a.clip_id = c.id AND a.is_current"""
_WHERE = """
    WHERE c.round_id = ANY(%(round_ids)s) AND c.status <> 'pulled' AND l.count > 0"""


def exported_clips_sql(
    select: str, *, placed: bool = True, ratings: bool = False, tail: str = ""
) -> str:
    """``SELECT <select>`` over exported clips; ``placed`` joins the split, ``ratings`` the
    current ratings; ``tail`` is GROUP BY / ORDER BY."""
    joins = (_PLACEMENT_JOIN if placed else "") + (_RATING_JOIN if ratings else "")
    return f"SELECT {select}{_FROM}{joins}{_WHERE}\n    {tail}"


def _columns(columns: list[tuple[str, pa.DataType, str]]) -> str:
    return ", ".join(f'{expr} AS "{name}"' for name, _type, expr in columns)


def label_rows_sql() -> str:
    """SELECT of every exported label row (params: round_ids, cond_ids, splits, groups)."""
    return exported_clips_sql(_columns(LABEL_COLUMNS), tail="ORDER BY c.id")


def rating_rows_sql() -> str:
    """SELECT of the current raw ratings of exported clips (params add ``salt``)."""
    return exported_clips_sql(
        _columns(RATING_COLUMNS), ratings=True, tail="ORDER BY c.id, a.annotator_id"
    )


_JUDGED_TASKS = f"""
    WITH exported AS ({exported_clips_sql("c.id, p.split, p.grp")})
    SELECT {{select}}
      FROM annotation_pairwisetask t
      LEFT JOIN exported ea ON ea.id = t.clip_a_id
      LEFT JOIN exported eb ON eb.id = t.clip_b_id
      {{joins}}
     WHERE t.judgement_count > 0 AND (ea.id IS NOT NULL OR eb.id IS NOT NULL)
     {{tail}}"""


def judgement_rows_sql() -> str:
    """SELECT of the exported judgements, one row per judge, task and dimension (params add
    ``salt``)."""
    return _JUDGED_TASKS.format(
        select=_columns(JUDGEMENT_COLUMNS),
        joins="JOIN annotation_pairwisejudgement j ON j.task_id = t.id\n"
        f"      CROSS JOIN LATERAL (VALUES {_JUDGED_DIMENSIONS}) AS v(ordinal, dimension, choice)",
        tail="AND ea.split = eb.split AND v.choice IN ('a', 'b', 'tie')\n"
        "     ORDER BY t.id, 7, v.ordinal",
    )


def judged_pair_counts(sql_params: dict) -> dict[str, int]:
    """Judged tasks touching the export: kept per split, and left out because their clips fall on
    both sides of the split or one clip is not exported (unrated, pulled, another round)."""
    select = """count(*) FILTER (WHERE ea.split = eb.split AND ea.split = 'train'),
        count(*) FILTER (WHERE ea.split = eb.split AND ea.split = 'test'),
        count(*) FILTER (WHERE ea.split <> eb.split),
        count(*) FILTER (WHERE ea.id IS NULL OR eb.id IS NULL)"""
    with connection.cursor() as cursor:
        cursor.execute(_JUDGED_TASKS.format(select=select, joins="", tail=""), sql_params)
        train, test, cross, outside = cursor.fetchone()
    return {
        "judged_pairs_train": train,
        "judged_pairs_test": test,
        "judged_pairs_cross_split": cross,
        "judged_pairs_not_exported": outside,
    }


def compute_placements(params: ExportParams) -> dict[str, list]:
    """Grouped split on the conditions of exported clips, as arrays ready to join in SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            exported_clips_sql(
                "d.id, d.image_sha256, d.prompt_sha256, count(*)",
                placed=False,
                tail="GROUP BY d.id",
            ),
            {"round_ids": params.round_ids},
        )
        items = [SplitItem(cid, image, prompt, n) for cid, image, prompt, n in cursor.fetchall()]
    placements = place_items(items, test_fraction=params.test_fraction, seed=params.seed)
    cond_ids = sorted(placements)
    return {
        "round_ids": params.round_ids,
        "cond_ids": cond_ids,
        "splits": [placements[c].split for c in cond_ids],
        "groups": [placements[c].group for c in cond_ids],
    }


def write_export_files(
    directory: Path,
    params: ExportParams,
    *,
    formats: tuple[str, ...] = FORMATS,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict[str, Path], dict[str, int]]:
    """Write label (and optionally rating) files plus README.md; return paths and row counts."""
    sql_params = compute_placements(params)
    written: dict[str, Path] = {}
    row_counts: dict[str, int] = {}

    def write(table: str, counted_as: str, sql: str, sql_args: dict, columns) -> None:
        for fmt in formats:
            path = directory / f"{table}.{fmt}"
            row_counts[counted_as] = _WRITERS[fmt](path, sql, sql_args, columns, progress)
            written[f"{table}_{fmt}"] = path

    write("labels", "clips", label_rows_sql(), sql_params, LABEL_COLUMNS)
    if params.include_ratings:
        rating_params = {**sql_params, "salt": _pseudonym_salt()}
        write("ratings", "ratings", rating_rows_sql(), rating_params, RATING_COLUMNS)
    judgement_params = {**sql_params, "salt": _pseudonym_salt()}
    write("judgements", "judgements", judgement_rows_sql(), judgement_params, JUDGEMENT_COLUMNS)
    row_counts.update(judged_pair_counts(sql_params))
    row_counts.update(_split_counts(sql_params))
    card = directory / "README.md"
    card.write_text(dataset_card(params, row_counts, sql_params), encoding="utf-8")
    written["card"] = card
    return written, row_counts


def write_csv(path: Path, sql: str, params: dict, columns, progress=None) -> int:
    """COPY straight from Postgres into the file: constant memory, Postgres' own CSV."""
    with connection.cursor() as cursor, path.open("wb") as out:
        raw = cursor.cursor  # the psycopg cursor; COPY has no Django wrapper
        with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", params) as copy:
            for chunk in copy:
                out.write(chunk)
        rows = raw.rowcount  # from the server's "COPY n"
    if progress:
        progress(path.name, rows)
    return rows


def write_jsonl(path: Path, sql: str, params: dict, columns, progress=None) -> int:
    """One JSON object per line, built by Postgres (``row_to_json``) and COPYed out.

    CSV format with a quote and a delimiter that JSON text never contains (Postgres escapes
    control characters in JSON) passes each line through untouched; text format would double
    every backslash.
    """
    copy_sql = (
        f"COPY (SELECT row_to_json(q)::text FROM ({sql}) q) TO STDOUT "
        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    )
    with connection.cursor() as cursor, path.open("wb") as out:
        raw = cursor.cursor
        with raw.copy(copy_sql, params) as copy:
            for chunk in copy:
                out.write(chunk)
        rows = raw.rowcount
    if progress:
        progress(path.name, rows)
    return rows


def write_parquet(path: Path, sql: str, params: dict, columns, progress=None) -> int:
    """Parquet with an explicit schema: Postgres COPYs CSV to a scratch file, and pyarrow's
    streaming CSV reader turns it into one row group per block (constant memory, no per-row
    Python)."""
    schema = pa.schema([(name, type_) for name, type_, _expr in columns])
    rows = 0
    with tempfile.TemporaryDirectory(prefix="labelhub-parquet-") as tmp:
        scratch = Path(tmp) / "rows.csv"
        write_csv(scratch, sql, params, columns)
        reader = pa_csv.open_csv(
            scratch,
            read_options=pa_csv.ReadOptions(block_size=PARQUET_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={field.name: field.type for field in schema},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch.select(schema.names).cast(schema))
                rows += batch.num_rows
                if progress:
                    progress(path.name, batch.num_rows)
            if rows == 0:
                writer.write_table(schema.empty_table())
    return rows


_WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def dataset_card(params: ExportParams, row_counts: dict[str, int], sql_params: dict) -> str:
    """A short README.md for the snapshot; deterministic (no ids, no timestamps)."""
    dims = "\n".join(
        f"- `{k}_mean`, `{k}_std`, `{k}_count`: mean, population std and count of 1-5 ratings"
        for k in DIMENSION_KEYS
    )
    rounds = ", ".join(
        f"{rid} ({name})"
        for rid, name in Round.objects.filter(id__in=params.round_ids)
        .order_by("id")
        .values_list("id", "name")
    )
    ratings = (
        "`ratings.*`: one row per current rating (six integer scores, seconds spent); annotator ids "
        "are pseudonymised with a keyed hash.\n"
        if params.include_ratings
        else ""
    )
    judgements = (
        f"{row_counts.get('judgements', 0)} rows; judged pairs: "
        f"{row_counts.get('judged_pairs_train', 0)} in train, "
        f"{row_counts.get('judged_pairs_test', 0)} in test"
    )
    cross = row_counts.get("judged_pairs_cross_split", 0)
    outside = row_counts.get("judged_pairs_not_exported", 0)
    return f"""# LabelHub label snapshot

Human ratings of anime image-to-video clips on six dimensions (1-5, 5 best), aggregated per clip.

- Rounds: {rounds or "none"}
- Clips: {row_counts.get("clips", 0)} (train {row_counts.get("train", 0)}, test {row_counts.get("test", 0)})
- Test fraction requested: {params.test_fraction}; seed: {params.seed}
- Split rule: {SPLIT_RULE}. No condition image and no prompt appears in both splits.
- Only clips with at least one current rating are included; clips pulled as broken are left out.

## Files

`labels.jsonl`, `labels.csv`, `labels.parquet`: the same rows, ordered by `clip_id`.
{ratings}`judgements.*`: the A/B/tie judgements of judged pairs of exported clips, one row per
judge, pair and dimension ({judgements}); judges are pseudonymised like annotators. Pairs
whose clips fall on both sides of the split are left out ({cross}), as are pairs with a clip not
in this snapshot ({outside}).

## Columns

- `clip_id`, `round_id`, `round`, `condition_id`
- `video` (browser MP4), `original`, `condition_image`, `character_reference`: storage names
- `character_id`, `character`: the condition's gallery character, id and name (empty when none)
- `prompt`, `source_kind` (ground_truth / external / policy), `source_name`
- `split` (train / test), `group` (connected component of shared images and prompts)
{dims}
- `overall`: mean of the six means; `rating_count`: ratings behind the label

Judgements: `task_id`, `condition_id`, `clip_a_id`, `clip_b_id`, `split`, `group`, `judge`,
`dimension` (one of the six keys, or `overall` for the judge's overall choice) and `choice`
(`a`, `b` or `tie`, on clip_a / clip_b; the sides the judge saw were shuffled).

## Loading

```python
import datasets, pandas
ds = datasets.load_dataset("parquet", data_files="labels.parquet")["train"]
test = ds.filter(lambda row: row["split"] == "test")
df = pandas.read_parquet("labels.parquet")
```
"""


def _split_counts(sql_params: dict) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(exported_clips_sql("p.split, count(*)", tail="GROUP BY p.split"), sql_params)
        counts = dict(cursor.fetchall())
    return {"train": counts.get("train", 0), "test": counts.get("test", 0)}


def _pseudonym_salt() -> str:
    # Keyed by the secret key so pseudonyms cannot be reversed by hashing known ids.
    return hmac.new(
        settings.SECRET_KEY.encode(), b"labelhub-export-annotator", "sha256"
    ).hexdigest()[:32]
