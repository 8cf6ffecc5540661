"""Load benchmark of the annotation API: 50 annotators rating a 3,000-clip round at once.

    .venv/bin/python bench/annotate_load.py [--annotators 50] [--iterations 30] [--clips 3000]

What it does, start to finish (loopback only, bounded, stops by itself):
1. drops and re-creates a dedicated database (LABELHUB_DB_NAME, default labelhub_bench_annotate),
   migrates it, and seeds one round of ``--clips`` ready clips (bulk_create; the media names are
   dummies: this measures the API, not ingest) and ``--annotators`` annotator users;
2. starts gunicorn (gunicorn.conf.py, DEBUG off) on a free loopback port against that database;
3. logs every simulated annotator in through /accounts/login/ (session cookie + CSRF token);
4. runs the annotators concurrently, one thread each, for ``--iterations`` rounds of:
   POST /api/rounds/<id>/next/ -> think -> POST /api/clips/<id>/ratings/ -> GET /api/me/
   (``--think`` seconds, uniform in [0, 2 x think], between seeing a clip and submitting it:
   2 s by default, compressed ~10x from the 10-30 s a person takes, so 50 annotators offer ~20
   ratings/s; ``--think 0`` measures saturation instead, where latency is all queueing);
5. prints p50/p99 latency per call, ratings per second, and the ratio of next/submit p99 to the
   trivial authenticated GET /api/me/ on the same server at the same time;
6. checks the data: clips rated more than their target (over-assignment), rating_count that
   disagrees with the ratings, and ClipLabel rows that differ from a recompute (all must be 0);
7. measures SQL queries and in-process time per request of each endpoint (Django test client);
8. stops gunicorn.

Targets: over-assigned 0, labels differing 0, next and submit p99 < 50 ms and within 3x of /api/me/.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.dimensions import DIMENSION_KEYS  # noqa: E402

PASSWORD = "bench-password"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=30, help="clips each annotator rates")
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--ratings-per-clip", type=int, default=3)
    parser.add_argument(
        "--think", type=float, default=2.0, help="mean seconds between next and submit"
    )
    # On 2 cores more processes with fewer threads did no worse than 3 x 4 and often better
    # (the GIL serialises the ORM work of one worker's threads): next p99 73-117 ms at 6 x 2,
    # 113-123 ms at 3 x 4, on a machine shared with other work, so noisy.
    parser.add_argument("--workers", type=int, default=6, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument(
        "--db", default=os.environ.get("LABELHUB_BENCH_DB", "labelhub_bench_annotate")
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pg-log-slow-ms",
        type=int,
        default=None,
        help="log statements slower than this in the server log (ALTER DATABASE ... SET "
        "log_min_duration_statement), to see which query makes a slow tail",
    )
    return parser.parse_args()


# --- database -------------------------------------------------------------------------------------


def recreate_database(name: str, *, log_slow_ms: int | None = None) -> None:
    import psycopg
    from psycopg import sql

    from labelhub import settings as raw_settings

    db = raw_settings.DATABASES["default"]
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"],
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if log_slow_ms is not None:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET log_min_duration_statement = {}").format(
                    sql.Identifier(name), sql.Literal(log_slow_ms)
                )
            )


def seed(args: argparse.Namespace) -> tuple[int, list[str]]:
    """One round of ready clips (three per condition) and the annotator users; returns ids."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from annotation.models import Clip, Condition, Round
    from labelhub.roles import ANNOTATOR

    round_ = Round.objects.create(name="bench", ratings_per_clip=args.ratings_per_clip)
    per_condition = 3
    conditions = Condition.objects.bulk_create(
        Condition(
            content_hash=f"{i:064x}",
            image=f"conditions/bench-{i}.png",
            image_sha256=f"{i:064x}",
            prompt=f"bench prompt {i}",
            prompt_sha256=f"{i:064x}",
        )
        for i in range((args.clips + per_condition - 1) // per_condition)
    )
    Clip.objects.bulk_create(
        (
            Clip(
                round=round_,
                condition=conditions[i // per_condition],
                source_kind=Clip.SourceKind.EXTERNAL,
                source_name=("hailuo", "vidu", "cogvideox")[i % per_condition],
                original=f"originals/bench-{i}.mp4",
                original_sha256=f"{i:064x}",
                video=f"clips/bench-{i}.mp4",
                poster=f"posters/bench-{i}.jpg",
                frames=49,
                fps=16.0,
                width=480,
                height=320,
                duration=3.0,
                status=Clip.Status.READY,
                target_ratings=args.ratings_per_clip,
            )
            for i in range(args.clips)
        ),
        batch_size=1000,
    )
    password = make_password(PASSWORD)  # hashed once: the users share it
    names = [f"bench-annotator-{i:03d}" for i in range(args.annotators)]
    users = User.objects.bulk_create(User(username=n, password=password) for n in names)
    group, _ = Group.objects.get_or_create(name=ANNOTATOR)
    group.user_set.add(*users)
    from django.db import connection

    with connection.cursor() as cursor:
        # Planner statistics, as autovacuum keeps them on a running database: without them the
        # bulk-loaded tables look empty and the first minute of the run measures bad plans.
        cursor.execute("ANALYZE")
    return round_.pk, names


# --- server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    args: argparse.Namespace, port: int, log_path: Path, access_path: Path
) -> subprocess.Popen:
    env = {**os.environ, "LABELHUB_DB_NAME": args.db}
    access_path.unlink(missing_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
            "--access-logfile",
            str(access_path),
            "--access-logformat",
            "%(m)s %(U)s %(s)s %(D)s",  # method, path, status, microseconds inside the worker
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"gunicorn did not answer within 60 s; see {log_path}")


def stop_gunicorn(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_cpu_seconds(master_pid: int) -> float:
    """CPU seconds (user + system) used so far by the gunicorn workers of ``master_pid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # fields[1] is the parent pid
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


# --- simulated annotators -------------------------------------------------------------------------


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.samples.setdefault(name, []).append(seconds)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def login(base: str, username: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
    )
    if response.status_code != 302:
        raise SystemExit(f"login of {username} failed: HTTP {response.status_code}")
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.headers["Referer"] = f"{base}/"
    return client


def annotate(
    client,
    *,
    round_id: int,
    iterations: int,
    think: float,
    seed: int,
    timings: Timings,
    start: threading.Barrier,
) -> None:
    rng = random.Random(seed)
    start.wait()
    # Annotators arrive spread over one think time, as people do; starting all 50 in the same
    # millisecond would measure a thundering herd of first requests instead of steady work.
    time.sleep(rng.uniform(0, 2 * think))
    for _ in range(iterations):
        t0 = time.perf_counter()
        response = client.post(f"/api/rounds/{round_id}/next/", json={"exclude": []})
        timings.add("next", time.perf_counter() - t0)
        if response.status_code == 204:
            return
        if response.status_code != 200:
            timings.error(f"next HTTP {response.status_code}")
            continue
        clip_id = response.json()["clip"]["id"]
        time.sleep(rng.uniform(0, 2 * think))
        body = {key: rng.randint(1, 5) for key in DIMENSION_KEYS}
        body.update(seconds_spent=round(rng.uniform(5, 30), 1), idempotency_key=str(uuid.uuid4()))
        t0 = time.perf_counter()
        response = client.post(f"/api/clips/{clip_id}/ratings/", json=body)
        timings.add("submit", time.perf_counter() - t0)
        if response.status_code != 201:
            timings.error(f"submit HTTP {response.status_code}")
        t0 = time.perf_counter()
        response = client.get("/api/me/")
        timings.add("me", time.perf_counter() - t0)
        if response.status_code != 200:
            timings.error(f"me HTTP {response.status_code}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def server_times(access_path: Path, round_id: int) -> dict[str, list[float]]:
    """Seconds each API call spent inside a gunicorn worker, from the access log."""
    kinds = {f"/api/rounds/{round_id}/next/": "next", "/api/me/": "me"}
    times: dict[str, list[float]] = {"next": [], "submit": [], "me": []}
    for line in access_path.read_text().splitlines():
        method, path, _status, micros = line.split()
        kind = kinds.get(path) or ("submit" if path.endswith("/ratings/") else None)
        if kind:
            times[kind].append(int(micros) / 1e6)
    return {name: values for name, values in times.items() if values}


# --- checks ---------------------------------------------------------------------------------------


def integrity() -> dict[str, int]:
    from django.db import connection

    from annotation.services.labels import recompute_all_labels

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
              count(*) FILTER (WHERE c.rating_count > c.target_ratings),
              count(*) FILTER (WHERE coalesce(r.n, 0) > c.target_ratings),
              count(*) FILTER (WHERE coalesce(r.n, 0) <> c.rating_count)
            FROM annotation_clip c
            LEFT JOIN (SELECT clip_id, count(*) AS n FROM annotation_rating
                       WHERE is_current GROUP BY clip_id) r ON r.clip_id = c.id
            """
        )
        over_count, over_rows, count_mismatch = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM annotation_rating WHERE is_current")
        ratings = cursor.fetchone()[0]
    report = recompute_all_labels(dry_run=True)
    return {
        "ratings": ratings,
        "over_assigned_rating_count": over_count,
        "over_assigned_ratings": over_rows,
        "rating_count_mismatch": count_mismatch,
        "labels_differing": len(report.differing),
    }


def profile_endpoints(round_id: int, *, repeat: int = 30) -> dict[str, tuple[int, float]]:
    """Per endpoint: SQL statements per request (the most seen) and mean in-process time (ms),
    one request at a time through Django's test client: the server-side cost without queueing
    or HTTP. Runs on a round of its own (``repeat`` fresh clips, like the loaded round's), so a
    round the load used up still gets measured."""
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotation.models import Clip, Round
    from labelhub.roles import ANNOTATOR

    loaded = Clip.objects.filter(round_id=round_id).order_by("pk").first()
    profile_round = Round.objects.create(
        name=f"bench-profile-{uuid.uuid4().hex[:8]}", ratings_per_clip=1
    )
    Clip.objects.bulk_create(
        Clip(
            round=profile_round,
            condition_id=loaded.condition_id,
            source_kind=loaded.source_kind,
            source_name=loaded.source_name,
            original=f"originals/profile-{i}.mp4",
            original_sha256=f"{i:064x}",
            video=f"clips/profile-{i}.mp4",
            poster=f"posters/profile-{i}.jpg",
            frames=loaded.frames,
            fps=loaded.fps,
            width=loaded.width,
            height=loaded.height,
            duration=loaded.duration,
            status=Clip.Status.READY,
            target_ratings=1,
        )
        for i in range(repeat)
    )
    user, _ = User.objects.get_or_create(username="bench-profiler")
    user.groups.add(Group.objects.get(name=ANNOTATOR))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    queries: dict[str, int] = {"next": 0, "submit": 0, "me": 0}
    seconds: dict[str, float] = {"next": 0.0, "submit": 0.0, "me": 0.0}
    calls: dict[str, int] = {"next": 0, "submit": 0, "me": 0}

    def call(name: str, method, *args, **kwargs):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = method(*args, **kwargs)
            seconds[name] += time.perf_counter() - t0
        queries[name] = max(queries[name], len(ctx.captured_queries))
        calls[name] += 1
        return response

    client.get("/api/me/")  # the first request of a process imports the URLconf: not measured
    for _ in range(repeat):
        response = call(
            "next",
            client.post,
            f"/api/rounds/{profile_round.pk}/next/",
            {"exclude": []},
            content_type="application/json",
        )
        if response.status_code != 200:  # nothing left (204) or refused: stop measuring
            print(f"  profile: next answered HTTP {response.status_code}; stopped")
            break
        body = dict.fromkeys(DIMENSION_KEYS, 3) | {"idempotency_key": str(uuid.uuid4())}
        call(
            "submit",
            client.post,
            f"/api/clips/{response.json()['clip']['id']}/ratings/",
            body,
            content_type="application/json",
        )
        call("me", client.get, "/api/me/")
    return {
        name: (queries[name], 1000 * seconds[name] / calls[name]) for name in seconds if calls[name]
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    os.environ["LABELHUB_DB_NAME"] = args.db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")
    # Production settings (DEBUG off) over plain HTTP on loopback: a throwaway secret key, since
    # settings refuse to start without DEBUG on the well-known development key.
    os.environ["LABELHUB_DEBUG"] = "0"
    os.environ.setdefault("LABELHUB_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["LABELHUB_HTTPS"] = "0"
    os.environ.setdefault("LABELHUB_LOG_LEVEL", "WARNING")

    print(
        f"database {args.db}: re-created; migrating and seeding {args.clips} clips ...", flush=True
    )
    recreate_database(args.db, log_slow_ms=args.pg_log_slow_ms)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    round_id, usernames = seed(args)
    print(
        f"seeded round {round_id}: {args.clips} clips, {len(usernames)} annotators "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    from django.db import connection

    connection.close()  # the server processes get their own connections

    log_dir = ROOT / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "bench-annotate-gunicorn.log"
    port = free_port()
    access_path = log_dir / "bench-annotate-access.log"
    server = start_gunicorn(args, port, log_path, access_path)
    base = f"http://127.0.0.1:{port}"
    print(
        f"gunicorn on {base}: {args.workers} workers x {args.threads} threads (gthread); "
        f"log {log_path}",
        flush=True,
    )
    try:
        t0 = time.perf_counter()
        clients = [login(base, name) for name in usernames]
        print(
            f"logged in {len(clients)} annotators in {time.perf_counter() - t0:.1f} s", flush=True
        )
        timings = Timings()
        barrier = threading.Barrier(len(clients) + 1)
        threads = [
            threading.Thread(
                target=annotate,
                args=(client,),
                kwargs=dict(
                    round_id=round_id,
                    iterations=args.iterations,
                    think=args.think,
                    seed=args.seed + i,
                    timings=timings,
                    start=barrier,
                ),
                daemon=True,
            )
            for i, client in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        load_before = os.getloadavg()[0]
        barrier.wait()
        client_cpu0, server_cpu0 = time.process_time(), server_cpu_seconds(server.pid)
        t0 = time.perf_counter()
        for thread in threads:
            thread.join(timeout=args.iterations * (2 * args.think + 30))
        elapsed = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu0
        server_cpu = server_cpu_seconds(server.pid) - server_cpu0
        for client in clients:
            client.close()
    finally:
        stop_gunicorn(server)

    print()
    print(
        f"{len(usernames)} annotators x {args.iterations} iterations, think {args.think} s mean, "
        f"{elapsed:.1f} s wall"
    )
    print(f"{'call':<8}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name in ("next", "submit", "me"):
        values = timings.samples.get(name, [])
        if values:
            print(
                f"{name:<8}{len(values):>7}{1000 * statistics.median(values):>10.1f}"
                f"{1000 * percentile(values, 0.99):>10.1f}{1000 * max(values):>10.1f}"
            )
    submitted = len(timings.samples.get("submit", [])) - sum(
        n for what, n in timings.errors.items() if what.startswith("submit")
    )
    requests = sum(len(v) for v in timings.samples.values())
    print(f"ratings/s {submitted / elapsed:.1f}   requests/s {requests / elapsed:.1f}")
    print(
        f"CPU during the load: gunicorn workers {server_cpu / elapsed:.2f} cores "
        f"({1000 * server_cpu / requests:.1f} ms per request), load generator "
        f"{client_cpu / elapsed:.2f} cores"
    )
    me_p99 = percentile(timings.samples["me"], 0.99)
    for name in ("next", "submit"):
        p99 = percentile(timings.samples[name], 0.99)
        print(
            f"{name} p99 / me p99 = {p99 / me_p99:.2f}x  (target <= 3x, p99 < 50 ms: "
            f"{'ok' if p99 < 0.050 and p99 <= 3 * me_p99 else 'MISSED'})"
        )
    if timings.errors:
        print(f"errors: {timings.errors}")
    print("inside gunicorn (access log, from request parsed to response written):")
    for name, values in server_times(access_path, round_id).items():
        print(
            f"  {name:<8}{len(values):>7}{1000 * statistics.median(values):>10.1f}"
            f"{1000 * percentile(values, 0.99):>10.1f}"
        )

    checks = integrity()
    print(f"ratings stored {checks.pop('ratings')}")
    for name, value in checks.items():
        print(f"{name:<28}{value:>6}  {'ok' if value == 0 else 'FAILED'}")
    print("server-side cost, one request at a time (in process, after the load):")
    for name, (count, ms) in profile_endpoints(round_id).items():
        print(f"  {name:<8}{count:>3} SQL queries   {ms:6.1f} ms")
    print(
        f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} CPUs"
    )
    failed = any(checks.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
