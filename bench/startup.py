"""Benchmark: how long `manage.py check` takes (the start-up every command, worker and web process
pays), as wall and CPU seconds, and where the CPU goes in one process (importing Django, settings
and the app registry, the URLconf with every view and API, the checks). Prints figures; not a test.

    .venv/bin/python bench/startup.py                    # this tree, 9 runs
    .venv/bin/python bench/startup.py --runs 5 /tmp/old  # also another checkout, interleaved

Goal (issue 23): under 1.5 s on a quiet machine. On a shared machine compare CPU seconds, and
compare trees in the same call (runs are interleaved so both see the same load). What a run
imports: `python -X importtime manage.py check` (modules only a few pages need, such as the
schema generator, numpy, pyarrow or markdown-it, load with those pages).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PHASES = """
import resource, django
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0 = cpu()
from django.core.management import call_command
t1 = cpu()
django.setup()
t2 = cpu()
from django.urls import get_resolver
get_resolver().url_patterns
t3 = cpu()
call_command("check", verbosity=0)
t4 = cpu()
print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f} {t4 - t3:.2f}")
"""


def environment(tree: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
        "LABELHUB_DEBUG": os.environ.get("LABELHUB_DEBUG", "1"),
    }


def check_once(tree: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `manage.py check` in ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=tree,
        env=environment(tree),
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def phases_once(tree: Path) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", PHASES],
        cwd=tree,
        env=environment(tree),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [float(v) for v in out.split()[-4:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", type=Path, help="other checkouts to compare with")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    trees = [ROOT, *(t.resolve() for t in args.trees)]
    for tree in trees:  # compile every module once, so no run pays for .pyc files
        check_once(tree)
    checks = {tree: [] for tree in trees}
    phases = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            checks[tree].append(check_once(tree))
            phases[tree].append(phases_once(tree))
    print(f"manage.py check, {args.runs} runs each, load average {os.getloadavg()[0]:.1f}")
    for tree in trees:
        wall = [w for w, _ in checks[tree]]
        cpu = [c for _, c in checks[tree]]
        parts = [statistics.median(p[i] for p in phases[tree]) for i in range(4)]
        print(
            f"{tree}: wall median {statistics.median(wall):.2f} s (min {min(wall):.2f}), "
            f"cpu median {statistics.median(cpu):.2f} s (min {min(cpu):.2f}); in one process, "
            f"cpu medians: import django {parts[0]:.2f}, setup {parts[1]:.2f}, "
            f"URLconf {parts[2]:.2f}, checks {parts[3]:.2f}"
        )


if __name__ == "__main__":
    main()
