"""One configuration a person's shell also sees: settings read the project's ``.env`` (python-dotenv),
the environment still wins, a bad line stops the start naming it, ``.env.example`` lists every
variable of README's configuration table, and ``make demo``'s helper writes a development ``.env``
once and never overwrites it.

Each start is a real ``manage.py`` process with a bare environment (no LABELHUB_ variable exported),
as in a new shell."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labelhub.env import Env, EnvError

ROOT = Path(__file__).resolve().parent.parent


def bare_env(**extra: str) -> dict[str, str]:
    """A new shell's environment: no LABELHUB_ variable, no Django settings module."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, "OMP_NUM_THREADS": "1", **extra}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_environment_wins_over_the_file_and_types_are_checked(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\nLABELHUB_LOG_LEVEL=DEBUG\nLABELHUB_DB_PORT='6543'\nLABELHUB_DEBUG=yes\n"
    )
    env = Env(path, environ={"LABELHUB_LOG_LEVEL": "WARNING"})
    assert env.str("LABELHUB_LOG_LEVEL", "INFO") == "WARNING"  # the environment wins
    assert env.int("LABELHUB_DB_PORT", 5432) == 6543  # quoted values unquoted by python-dotenv
    assert env.bool("LABELHUB_DEBUG", False) is True
    assert env.list("LABELHUB_ALLOWED_HOSTS", ["x"]) == ["x"]  # absent: the default

    path.write_text("LABELHUB_DEBUG=1\nLABELHUB_MAX_CLIP_SECONDS=ten\n")
    with pytest.raises(EnvError, match=r"\.env:2: LABELHUB_MAX_CLIP_SECONDS='ten' is not a number"):
        Env(path, environ={}).float("LABELHUB_MAX_CLIP_SECONDS", 60)
    with pytest.raises(EnvError, match="environment variable LABELHUB_DEBUG='maybe'"):
        Env(None, environ={"LABELHUB_DEBUG": "maybe"}).bool("LABELHUB_DEBUG", False)


def test_manage_py_runs_in_a_new_shell_from_the_env_file_alone(tmp_path):
    without = manage("check", env=bare_env(LABELHUB_ENV_FILE=""))
    assert without.returncode != 0 and "LABELHUB_SECRET_KEY is not set" in without.stderr

    path = tmp_path / ".env"
    path.write_text("LABELHUB_DEBUG=1\nLABELHUB_LOG_LEVEL=WARNING\n")
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.DEBUG, settings.LOGGING['root']['level'])",
        env=bare_env(LABELHUB_ENV_FILE=str(path)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "WARNING"]
    # An exported variable still wins over the file.
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.LOGGING['root']['level'])",
        env=bare_env(LABELHUB_ENV_FILE=str(path), LABELHUB_LOG_LEVEL="ERROR"),
    )
    assert done.stdout.split() == ["ERROR"], done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("LABELHUB_DEBUG=1\nLABELHUB_DEBG=1\n", ":2: unknown variable LABELHUB_DEBG"),
        (
            "LABELHUB_DEBUG=1\n\nLABELHUB_DB_PORT=five\n",
            ":3: LABELHUB_DB_PORT='five' is not an integer",
        ),
        ("# ok\nLABELHUB_DEBUG=maybe\n", ":2: LABELHUB_DEBUG='maybe' is not a boolean"),
        ("LABELHUB_DEBUG=1\nthis line is not an assignment\n", ":2: cannot parse"),
    ],
)
def test_a_bad_env_line_stops_the_start_naming_the_line(tmp_path, text, message):
    path = tmp_path / "labelhub.env"
    path.write_text(text)
    done = manage("check", env=bare_env(LABELHUB_ENV_FILE=str(path)))
    assert done.returncode != 0
    assert f"{path}{message}" in done.stderr


def readme_configuration_variables() -> set[str]:
    """Every LABELHUB_ variable of README's configuration table, shorthands (`_USER`) expanded."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("The scripts also read", 1)[0]
    names = set()
    for line in table.splitlines():
        if not line.startswith("| `LABELHUB_"):
            continue
        cell = line.split("|")[1]
        first = re.search(r"`(LABELHUB_[A-Z0-9_]+)`", cell).group(1)
        names.add(first)
        for short in re.findall(r"`(_[A-Z0-9_]+)`", cell):
            # `LABELHUB_DB_NAME` / `_USER`: the shorthand replaces the last word(s) of the first.
            stem = "LABELHUB_DB" if first.startswith("LABELHUB_DB_") else "LABELHUB"
            if first.startswith("LABELHUB_REWARD_SOURCE_"):
                stem = "LABELHUB_REWARD_SOURCE"
            names.add(stem + short)
    return names


def test_env_example_lists_every_configuration_variable_and_loads(tmp_path):
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^# (LABELHUB_[A-Z0-9_]+)=", example, flags=re.MULTILINE))
    wanted = readme_configuration_variables()
    assert len(wanted) >= 30
    assert wanted <= listed, f"missing from .env.example: {sorted(wanted - listed)}"

    # Uncommented, with its defaults and a secret key, it is a .env the settings accept whole.
    lines = [re.sub(r"^# (LABELHUB_\w+=)", r"\1", line) for line in example.splitlines()]
    text = "\n".join(lines).replace(
        "LABELHUB_SECRET_KEY=\n", "LABELHUB_SECRET_KEY=" + "k" * 50 + "\n"
    )
    path = tmp_path / ".env"
    path.write_text(text + "\n")
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.DEBUG, settings.DATABASES['default']['PORT'])",
        env=bare_env(LABELHUB_ENV_FILE=str(path), LABELHUB_HTTPS="0"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "5432"]


def test_demo_writes_a_development_env_once_and_never_overwrites_it(tmp_path):
    script = f"source {ROOT}/scripts/lib.sh; ROOT={tmp_path}; write_dev_env"
    env = bare_env(VENV=str(Path(sys.executable).parent.parent))
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
    written = (tmp_path / ".env").read_text()
    assert "LABELHUB_DEBUG=1" in written
    key = re.search(r"^LABELHUB_SECRET_KEY=(\S+)$", written, flags=re.MULTILINE).group(1)
    assert len(key) >= 50
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0  # the secret is the owner's only

    # It is a configuration the settings accept, in a new shell.
    done = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)",
        env=bare_env(LABELHUB_ENV_FILE=str(tmp_path / ".env")),
    )
    assert done.stdout.split() == ["True", key], done.stderr

    # A second run (or a person's own .env) is left exactly as it is.
    (tmp_path / ".env").write_text(written + "LABELHUB_LOG_LEVEL=WARNING\n")
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == written + "LABELHUB_LOG_LEVEL=WARNING\n"
