"""Fan-out benchmark: the tiny loop's generation and scoring on 1 and on 2 gpu workers.

CPU stand-ins for GPUs: each gpu worker is a real Celery worker process pinned to one core
(``taskset``) with one torch thread, as a GPU worker owns one GPU; one default-queue worker
ingests the candidates. Prints, per worker count: wall time and speed-up, the per-chunk overhead
(claim, load, hand-over: chunk time not spent generating) as a share of chunk time, the time
from launch to the first imported candidate, where generation and scoring chunks spend their
time, the parents' tails (last imports; queue signals), the ingest worker's CPU time and the
ceiling it puts on 2 stand-ins; then a stated model of what the figures imply for 8 and 64 GPUs.
It also prints the load average and how much more work 2 pinned CPU spinners do than 1 before
and after (2.00x on a quiet machine): on a shared machine that, not the platform, caps the ratios.

    LABELHUB_DB_NAME=labelhub_bench_fanout .venv/bin/python bench/fanout.py \
        [--conditions 8] [--candidates 2] [--steps 192] [--chunk-conditions 2] \
        [--score-clips 240] [--chunk-clips 30] [--batch-size 8]

The database named by LABELHUB_DB_NAME is created if missing, migrated and wiped; the broker is
LABELHUB_BENCH_REDIS_URL (default redis://127.0.0.1:6379/6), flushed before each measurement.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")
os.environ.setdefault("LABELHUB_DB_NAME", "labelhub_bench_fanout")
os.environ.setdefault("LABELHUB_DEBUG", "1")
os.environ.setdefault("LABELHUB_MEDIA_ROOT", tempfile.mkdtemp(prefix="labelhub-bench-media-"))
os.environ.setdefault(
    "LABELHUB_ARTIFACTS_ROOT", tempfile.mkdtemp(prefix="labelhub-bench-artifacts-")
)
BROKER = os.environ.get("LABELHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
os.environ["LABELHUB_REDIS_URL"] = BROKER
os.environ["LABELHUB_CELERY_EAGER"] = "0"

import redis  # noqa: E402
from _common import ensure_database  # noqa: E402

ensure_database()
import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.core.files.storage import default_storage  # noqa: E402
from django.core.management import call_command  # noqa: E402

from annotation.models import Clip, Condition, Round  # noqa: E402
from runs.models import Run  # noqa: E402
from scoring.models import RewardModel  # noqa: E402
from scoring.services import request_scoring  # noqa: E402
from training.services.launch import launch_run  # noqa: E402

ENDED = {Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED}


def start_worker(name: str, queue: str, core: int | None, log: Path) -> subprocess.Popen:
    pin = ["taskset", "-c", str(core)] if core is not None else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*pin, sys.executable, "-m", "celery", "-A", "labelhub", "worker", "-Q", queue]
        + ["-P", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        + ["-n", f"{name}@%h", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
    )


def wait(run: Run, timeout: float = 3600) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ENDED:
            if run.status != Run.Status.SUCCEEDED:
                raise SystemExit(f"run {run.pk} {run.status}: {run.error}")
            return run
        time.sleep(0.2)
    raise SystemExit(f"run {run.pk} did not end in {timeout}s")


def source_round(conditions: int) -> Round:
    """A round whose clips name ``conditions`` conditions (the generator reads their images)."""
    from tests.toy import synthetic_conditions

    round_ = Round.objects.create(name="bench-source")
    folder = Path(tempfile.mkdtemp(prefix="labelhub-bench-conditions-"))
    placeholder = default_storage.save("clips/placeholder.mp4", ContentFile(b"\0" * 64))
    for index, c in enumerate(synthetic_conditions(folder, count=conditions, seed=0, size=64)):
        image = default_storage.save(
            f"conditions/c{index}.png", ContentFile(Path(c.first_frame).read_bytes())
        )
        condition = Condition.objects.create(
            content_hash=f"{index:064d}",
            image=image,
            image_sha256=f"{index:064d}",
            prompt=c.prompt,
            prompt_sha256=f"{index:064d}",
        )
        Clip.objects.create(
            round=round_,
            condition=condition,
            source_kind=Clip.SourceKind.EXTERNAL,
            source_name="bench",
            original=placeholder,
            original_sha256=f"{index:064d}",
            video=placeholder,
            status=Clip.Status.READY,
            target_ratings=round_.ratings_per_clip,
        )
    return round_


def scoring_round(generated: Round, clips: int) -> Round:
    """A round of ``clips`` clips that reuse the generated round's videos and conditions (distinct
    rows, as distinct clips would be): enough scoring work for chunks to stand for GPU minutes."""
    round_ = Round.objects.create(name=f"bench-scoring-{uuid.uuid4().hex[:6]}")
    sources = list(generated.clips.order_by("pk"))
    Clip.objects.bulk_create(
        Clip(
            round=round_,
            condition_id=source.condition_id,
            source_kind=source.source_kind,
            source_name="bench-scoring",
            original=source.original.name,
            original_sha256=f"{index:064x}",
            video=source.video.name,
            poster=source.poster.name,
            status=Clip.Status.READY,
            target_ratings=round_.ratings_per_clip,
        )
        for index, source in zip(range(clips), itertools.cycle(sources), strict=False)
    )
    return round_


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a live process and its waited-for children (ffmpeg under ingest)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tiny_reward_model() -> RewardModel:
    """A tiny AnimeReward with random weights, stored as a trained one would be."""
    from labelhub.storage import store_tree
    from scoring.anime_reward.models import AnimeReward

    folder = Path(tempfile.mkdtemp(prefix="labelhub-bench-reward-"))
    AnimeReward.from_preset("tiny", random_weights=True).save(folder)
    return RewardModel.objects.create(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        preset="tiny",
        checkpoint_dir=store_tree(folder, "models/reward/bench"),
    )


SPIN = "import time\nt = time.monotonic()\nx = 0\nfor i in range(15_000_000):\n    x += i\nprint(time.monotonic() - t)"


def parallel_cpu() -> float:
    """How much faster 2 pinned processes (cores 0 and 1) get through fixed CPU work than 1 does,
    right now: the most any 2-worker speed-up can be on this machine at its present load."""

    def run(cores: list[int]) -> float:
        spinners = [
            subprocess.Popen(
                ["taskset", "-c", str(core), sys.executable, "-c", SPIN],
                stdout=subprocess.PIPE,
                text=True,
            )
            for core in cores
        ]
        return max(float(s.communicate()[0]) for s in spinners)

    one = run([0])
    return 2 * one / run([0, 1 % os.cpu_count()])


def claim_gaps(chunks: list[Run]) -> float:
    """Claim latency: on each worker, the gaps between one chunk's end and its next one's start."""
    gaps = 0.0
    by_worker: dict[str, list] = {}
    for c in chunks:
        by_worker.setdefault(c.worker, []).append(c)
    for ran in by_worker.values():
        ran.sort(key=lambda c: c.started_at)
        gaps += sum(
            (b.started_at - a.finished_at).total_seconds()
            for a, b in zip(ran, ran[1:], strict=False)
        )
    return gaps


def measure(workers: int, args, source: Round, reward_model: RewardModel, logs: Path) -> dict:
    redis.Redis.from_url(BROKER).flushdb()
    processes = [start_worker("default", "default", None, logs / "default.log")]
    processes += [
        start_worker(f"gpu{i}", "gpu", i % os.cpu_count(), logs / f"gpu{i}.log")
        for i in range(workers)
    ]
    try:
        time.sleep(3)  # the workers connect
        admin = User.objects.get(username="bench-admin")
        # Warm-up: each worker loads the generator and the reward model once and keeps them
        # (a long-lived GPU worker already holds them); timed below, not counted per chunk.
        started = time.monotonic()
        warm = wait(
            launch_run(
                kind="generation",
                created_by=admin,
                params={
                    "source_round_id": source.pk,
                    "target_round": f"warm-{workers}-{uuid.uuid4().hex[:6]}",
                    "candidates_per_condition": 1,
                    "inference_steps": 1,
                    "chunk_conditions": math.ceil(args.conditions / workers),
                },
            )
        )
        wait(
            request_scoring(
                reward_model_id=reward_model.pk,
                round_id=warm.artifacts["round_id"],
                chunk_clips=math.ceil(args.conditions / workers),
                created_by=admin,
            )
        )
        warm_up = time.monotonic() - started
        ingest_cpu = cpu_seconds(processes[0].pid)
        generation = wait(
            launch_run(
                kind="generation",
                created_by=admin,
                params={
                    "source_round_id": source.pk,
                    "target_round": f"bench-{workers}-{uuid.uuid4().hex[:6]}",
                    "candidates_per_condition": args.candidates,
                    "inference_steps": args.steps,
                    "chunk_conditions": args.chunk_conditions,
                },
            )
        )
        ingest_cpu = cpu_seconds(processes[0].pid) - ingest_cpu
        target = Round.objects.get(pk=generation.artifacts["round_id"])
        scored = scoring_round(target, args.score_clips)
        scoring = wait(
            request_scoring(
                reward_model_id=reward_model.pk,
                round_id=scored.pk,
                chunk_clips=args.chunk_clips,
                batch_size=args.batch_size,
                created_by=admin,
            )
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    chunks = list(generation.children.order_by("pk"))
    seconds = {
        k: sum(c.artifacts["seconds"][k] for c in chunks) for k in chunks[0].artifacts["seconds"]
    }
    chunk_time = sum((c.finished_at - c.started_at).total_seconds() for c in chunks)
    generating = sum(c.artifacts["seconds"]["generate"] for c in chunks)
    gaps = claim_gaps(chunks)
    by_worker = {c.worker for c in chunks}
    first_clip = Clip.objects.filter(round=target).order_by("created_at").first()
    scoring_chunks = list(scoring.children.order_by("pk"))
    return {
        # after the last chunk ended: the parent waits for the last imports, links candidates
        "import_tail": (
            generation.finished_at - max(c.finished_at for c in chunks)
        ).total_seconds(),
        "ingest_cpu": ingest_cpu,
        "scoring_chunks": len(scoring_chunks),
        "scoring_chunk_seconds": sum(
            (c.finished_at - c.started_at).total_seconds() for c in scoring_chunks
        )
        / len(scoring_chunks),
        "scoring_workers": len({c.worker for c in scoring_chunks}),
        "scoring_seconds": {
            k: sum(c.artifacts["seconds"][k] for c in scoring_chunks)
            for k in scoring_chunks[0].artifacts["seconds"]
        },
        "scoring_gaps": claim_gaps(scoring_chunks),
        "scoring_chunk_total": sum(
            (c.finished_at - c.started_at).total_seconds() for c in scoring_chunks
        ),
        "scoring_tail": (
            scoring.finished_at - max(c.finished_at for c in scoring_chunks)
        ).total_seconds(),
        "scored": sum(int(c.artifacts.get("scored") or 0) for c in scoring_chunks),
        "generation_wall": (generation.finished_at - generation.started_at).total_seconds(),
        "scoring_wall": (scoring.finished_at - scoring.started_at).total_seconds(),
        "chunks": len(chunks),
        "chunk_seconds": chunk_time / len(chunks),
        "overhead_share": (chunk_time + gaps - generating) / (chunk_time + gaps),
        "seconds": seconds,
        "warm_up": warm_up,
        "first_candidate": (first_clip.created_at - generation.started_at).total_seconds(),
        "workers_used": len(by_worker),
        "clips": target.clips.count(),
    }


def scoring_overhead(r: dict) -> float:
    """The share of scoring chunks' time (claim gaps included) not spent decoding or scoring."""
    spent = r["scoring_chunk_total"] + r["scoring_gaps"]
    work = r["scoring_seconds"]["decode_wait"] + r["scoring_seconds"]["score"]
    return (spent - work) / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditions", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument(
        "--steps",
        type=int,
        default=192,
        help="inference steps per video. On a GPU host a video is minutes of GPU and about a "
        "second of ingest on the host's CPU; here the stand-ins and ingest (ffmpeg) share the "
        "same 2 cores, so a tiny video must cost far more than its ingest to stand for that: at "
        "64 steps ingest takes about half a video's CPU time and caps 2 workers near 1.3x; at "
        "192 about a sixth (the bound is printed)",
    )
    parser.add_argument("--chunk-conditions", type=int, default=2)
    parser.add_argument(
        "--score-clips",
        type=int,
        default=240,
        help="clips scored (the generated videos reused as distinct clips: enough work for a "
        "scoring chunk to stand for GPU minutes)",
    )
    parser.add_argument("--chunk-clips", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8, help="scoring batch size")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    User.objects.create_superuser("bench-admin", password=uuid.uuid4().hex)
    source = source_round(args.conditions)
    reward_model = tiny_reward_model()
    logs = Path(tempfile.mkdtemp(prefix="labelhub-bench-fanout-logs-"))
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    parallel_before = parallel_cpu()
    results = {n: measure(n, args, source, reward_model, logs) for n in (1, 2)}
    parallel_after = parallel_cpu()
    load_after = Path("/proc/loadavg").read_text().split()[:3]

    videos = args.conditions * args.candidates
    print(
        f"\nfan-out on {os.cpu_count()} cores: {videos} tiny candidates ({args.conditions} "
        f"conditions x {args.candidates}, {args.steps} steps), chunks of {args.chunk_conditions} "
        f"conditions; scoring {args.score_clips} clips in chunks of {args.chunk_clips}; logs in "
        f"{logs}\nload average (1, 5, 15 min) before {' '.join(load_before)}, after "
        f"{' '.join(load_after)} (other processes on these cores skew the ratios); 2 pinned "
        f"CPU spinners do {parallel_before:.2f}x the work of 1 before, {parallel_after:.2f}x after"
        " (2.00x on a quiet machine: the ceiling of any 2-worker speed-up here now)"
    )
    print("workers  gen wall  speed-up  score wall  speed-up  chunk s  overhead  first cand.")
    one = results[1]
    for n, r in results.items():
        print(
            f"{n:>7}  {r['generation_wall']:7.1f}s  {one['generation_wall'] / r['generation_wall']:7.2f}x"
            f"  {r['scoring_wall']:9.1f}s  {one['scoring_wall'] / r['scoring_wall']:7.2f}x"
            f"  {r['chunk_seconds']:6.1f}  {100 * r['overhead_share']:7.1f}%"
            f"  {r['first_candidate']:9.1f}s   ({r['workers_used']} workers ran chunks, "
            f"{r['clips']} clips)"
        )
    for n, r in results.items():
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in r["seconds"].items())
        print(
            f"{n} worker(s): generation chunks summed: {parts}; import tail after the last chunk "
            f"{r['import_tail']:.1f}s; ingest worker CPU (ffmpeg included) {r['ingest_cpu']:.1f}s; "
            f"warm-up (generator and reward model loaded once per worker) {r['warm_up']:.1f}s"
        )
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in r["scoring_seconds"].items())
        print(
            f"{n} worker(s): scoring: {r['scoring_chunks']} chunks of "
            f"{r['scoring_chunk_seconds']:.1f}s on {r['scoring_workers']} workers, {r['scored']} "
            f"clips; summed over chunks: {parts}; claim gaps {r['scoring_gaps']:.1f}s; parent's "
            f"tail after the last chunk (queue signals) {r['scoring_tail']:.1f}s; overhead (chunk "
            f"time and claim gaps not decoding or scoring) {100 * scoring_overhead(r):.1f}%"
        )
    generate = one["seconds"]["generate"]
    print(
        f"On these {os.cpu_count()} cores the CPU stand-ins share the cores with ingest (ffmpeg), "
        f"which a GPU host runs beside its GPUs: generation's speed-up with 2 workers is bounded "
        f"by 2 x generate / (generate + ingest CPU) = "
        f"{2 * generate / (generate + one['ingest_cpu']):.2f}x here."
    )
    # One worker's figures: each GPU has its own device, so a chunk's time does not grow with N
    # as it does for 2 stand-ins sharing 2 loaded cores.
    t_chunk, share, tail = one["chunk_seconds"], one["overhead_share"], one["import_tail"]
    print(
        "\nModel (stated, not measured): a round of C chunks on N GPUs takes about\n"
        "  T(N) = load + ceil(C / N) * t_chunk + import tail,\n"
        f"with this run's 1-worker t_chunk {t_chunk:.1f}s ({100 * share:.1f}% of it overhead: "
        f"claim, LoRA, hand-over) and import tail {tail:.1f}s, the chunk time held constant per "
        "GPU;\nso the speed-up is about C / ceil(C / N) while chunks outnumber GPUs. The broker "
        "and Postgres see one claim, a few progress writes and one import row per candidate, far "
        "below their limits at these rates."
    )
    for gpus in (8, 64):
        for chunks in (results[1]["chunks"], 1000):
            rounds = math.ceil(chunks / gpus)
            single, many = chunks * t_chunk + tail, rounds * t_chunk + tail
            print(
                f"  {gpus:>2} GPUs, {chunks:>4} chunks: {rounds} chunk-times = {many:.0f}s "
                f"(1 GPU: {single:.0f}s), speed-up {single / many:.1f}x, efficiency "
                f"{single / many / gpus:.0%}"
            )
    print(
        "  paper scale: 2,000 conditions x 4 candidates, chunks of 2 conditions = 1,000 chunks of"
        " 8 videos x ~2 min = ~16 min per chunk on an H100: 1 GPU ~11 days, 8 GPUs ~1.4 days,"
        " 64 GPUs ~16 chunk-times = ~4.3 h (+ one generator load per GPU)."
    )


if __name__ == "__main__":
    main()
