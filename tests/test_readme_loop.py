"""The README is executed: every shell block of "The loop, by hand" runs as written, in a new shell
that has no LABELHUB_ variable exported (only the `.env` file, as after `make demo`), against a
database the demo's own commands built, with the demo's two Celery workers running. A command
that fails, or whose output no longer shows what the README prints under it, fails the test.

The demo database is the real one: `manage.py seed_demo` and `manage.py seed_demo_loop` (what
`make demo` runs), in a fresh test database whose ids start at 1, so the README's literal ids
(`--round 1`, `--snapshot 2`, ...) are those of a fresh demo. The demo is checked on the way
(`tests.test_demo.check_make_demo`: what it leaves, and that running it again adds nothing), so
the suite builds it once. `make docs-check` runs this file. At the end, the demo's snapshot is exported as a dataset
folder (`export_dataset --archive`) and loaded offline with `datasets` from the extracted tar.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from django.db import connection

from tests.readme_blocks import blocks, section, unmatched
from tests.test_dataset_folder import load_offline
from tests.test_demo import check_make_demo
from tests.workers import BROKER

ROOT = Path(__file__).resolve().parent.parent
SECTION = "The loop, by hand"


def test_the_readme_section_is_read_as_the_test_expects():
    """The parser sees what a reader sees: the commands, the lines under them, the variants."""
    parsed = blocks(section((ROOT / "README.md").read_text(encoding="utf-8"), SECTION))
    assert [b.run for b in parsed] == [True, True]
    first = parsed[0]
    assert first.assignments == ['M=".venv/bin/python manage.py"']
    assert [c.text.split()[1] for c in first.commands] == [
        "export_labels",
        "train_reward",
        "score_clips",
        "launch_run",
        "launch_run",
        "launch_run",
    ]
    train = first.commands[1]
    assert train.expected[0].startswith("reward model 2 (my-reward) saved")
    assert len(train.shown) == 1 and "--finetune-encoders" in train.shown[0]
    assert "checkpoint_name=my-gapo --wait" in first.commands[4].text  # continuation joined
    # The matcher: numbers and hashes vary, `...` elides, but words must be there.
    export = first.commands[0].expected
    assert unmatched(export, "snapshot 7: 40 clips (30 train / 10 test), hash 0123abcd99ff") == []
    assert unmatched(export, "snapshot 7: 40 clips, hash 0123abcd99ff") == export


def _bare_env(env_file: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, "OMP_NUM_THREADS": "1", "LABELHUB_ENV_FILE": str(env_file)}


def _shell(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def _worker(name: str, queue: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    # As scripts/start.sh starts them (prefork would double the memory on 2 cores: solo here).
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "labelhub", "worker", "-Q", queue, "-n",
         f"{name}@readme", "-P", "solo", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_every_command_of_the_loop_by_hand_runs_as_written(tmp_path):
    # The configuration a new shell sees: a .env as make demo writes, on this test's services.
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            [
                "LABELHUB_DEBUG=1",
                f"LABELHUB_SECRET_KEY={secrets.token_urlsafe(50)}",
                f"LABELHUB_DB_NAME={connection.settings_dict['NAME']}",
                f"LABELHUB_REDIS_URL={BROKER}",
                f"LABELHUB_MEDIA_ROOT={tmp_path / 'media'}",
                f"LABELHUB_ARTIFACTS_ROOT={tmp_path / 'artifacts'}",
                f"LABELHUB_IMPORT_ROOTS={tmp_path / 'import'}",
                "LABELHUB_LOG_LEVEL=WARNING",
                "",
            ]
        )
    )
    env = _bare_env(env_file)
    subprocess.run(
        [sys.executable, "-c", f"import redis; redis.Redis.from_url({BROKER!r}).flushdb()"],
        check=True,
    )

    def manage(step: str) -> str:
        done = _shell(f".venv/bin/python manage.py {step}", env, timeout=900)
        assert done.returncode == 0, f"{step} failed:\n{done.stdout[-4000:]}"
        return done.stdout

    workers = [
        _worker("worker", "default", env, tmp_path / "worker.log"),
        _worker("worker-gpu", "gpu", env, tmp_path / "worker-gpu.log"),
    ]
    try:
        check_make_demo(manage)  # make demo's own data steps, checked (tests/test_demo.py)

        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        assignments: list[str] = []
        ran = 0
        for block in blocks(section(readme, SECTION)):
            assignments += block.assignments
            if not block.run:
                continue
            for command in block.commands:
                script = "\n".join([*assignments, command.text])
                done = _shell(script, env, timeout=900)
                assert done.returncode == 0, (
                    f"README command failed ({done.returncode}):\n{command.text}\n"
                    f"{done.stdout[-4000:]}"
                )
                missing = unmatched(command.expected, done.stdout)
                assert not missing, (
                    f"README command {command.text!r} no longer prints {missing}; it printed:\n"
                    f"{done.stdout[-4000:]}"
                )
                ran += 1
        assert ran == 7

        # The demo's snapshot leaves with its videos: a dataset folder `datasets` loads offline.
        done = _shell(
            f".venv/bin/python manage.py export_dataset --snapshot 2 --archive {tmp_path}/ds.tar",
            env,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-4000:]
        with tarfile.open(tmp_path / "ds.tar") as tar:
            tar.extractall(tmp_path / "dataset", filter="data")
        loaded = load_offline(tmp_path / "dataset" / "snapshot-2-dataset")
        assert loaded["splits"] == {"train": 36, "test": 12}  # the README's snapshot 2
        assert loaded["frames"] > 0
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
