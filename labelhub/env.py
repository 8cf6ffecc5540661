"""Where settings come from: environment variables first, then the project's ``.env`` file.

The ``.env`` file (python-dotenv's format: ``NAME=value`` lines, ``#`` comments, quotes) sits at the
project root, or wherever ``LABELHUB_ENV_FILE`` points (empty: no file). It is what a person's new
shell sees too, so ``manage.py`` works in any shell after ``make demo`` wrote one. A variable set in
the environment always wins over the file.

A ``.env`` is checked strictly, because a typo there would otherwise be silently ignored: a line
python-dotenv cannot parse, a ``LABELHUB_`` name no setting reads, or a value of the wrong type
(``LABELHUB_DEBUG=maybe``, ``LABELHUB_DB_PORT=five``) stops the start with ``path:line`` in the error.

No settings needed (python-dotenv, and Django only for its error class): ``settings``, ``gunicorn.conf.py`` and the shell scripts
(``python -m labelhub.env export``) read the same file the same way.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv.parser import parse_stream

PREFIX = "LABELHUB_"
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})

# Read by the scripts and gunicorn.conf.py, not by settings: still legitimate in a .env.
SCRIPT_VARIABLES = frozenset(
    {
        "LABELHUB_WEB_BIND",
        "LABELHUB_WEB_WORKERS",
        "LABELHUB_WEB_THREADS",
        "LABELHUB_WORKER_CONCURRENCY",
        "LABELHUB_PG_TRUST_LOOPBACK",
    }
)


class EnvError(ImproperlyConfigured):
    """A configuration value that cannot be used; the message names its variable and origin."""


@dataclass(frozen=True)
class Entry:
    value: str
    line: int


def default_env_file(base_dir: Path) -> Path | None:
    """The ``.env`` to read: ``LABELHUB_ENV_FILE`` if set (empty: none), else ``<base_dir>/.env``."""
    named = os.environ.get("LABELHUB_ENV_FILE")
    if named is None:
        return base_dir / ".env"
    return Path(named) if named.strip() else None


def parse_env_file(path: Path) -> dict[str, Entry]:
    """The bindings of a ``.env`` file by name; a line python-dotenv cannot parse is an error."""
    entries: dict[str, Entry] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            text = binding.original.string
            # python-dotenv hands blank lines to the binding after them: count them in.
            line = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
            if binding.error:
                raise EnvError(
                    f"{path}:{line}: cannot parse {text.strip()!r} (expected NAME=value)"
                )
            if binding.key is None:
                continue  # a comment or a blank line
            if binding.value is None:
                raise EnvError(f"{path}:{line}: {binding.key} has no value (expected NAME=value)")
            entries[binding.key] = Entry(binding.value, line)
    return entries


class Env:
    """Typed reads of LABELHUB_* variables: the environment first, then the ``.env`` file.

    Every name read is remembered, so ``check_unknown`` can reject a ``.env`` line that no setting
    reads (a misspelt name would otherwise be ignored).
    """

    def __init__(self, path: Path | None, environ: dict[str, str] | None = None):
        self.path = path
        self.environ = os.environ if environ is None else environ
        self.file: dict[str, Entry] = (
            parse_env_file(path) if path is not None and path.is_file() else {}
        )
        self.read: set[str] = set()

    def raw(self, name: str) -> str | None:
        self.read.add(name)
        if name in self.environ:
            return self.environ[name]
        entry = self.file.get(name)
        return None if entry is None else entry.value

    def origin(self, name: str) -> str:
        if name in self.environ:
            return f"environment variable {name}"
        return f"{self.path}:{self.file[name].line}: {name}"

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
        raise EnvError(f"{self.origin(name)}={value!r} is not a boolean (1/0, true/false, yes/no)")

    def int(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise EnvError(f"{self.origin(name)}={value!r} is not an integer") from None

    def float(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return float(value.strip())
        except ValueError:
            raise EnvError(f"{self.origin(name)}={value!r} is not a number") from None

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return default
        return [item for item in (part.strip() for part in value.split(",")) if item]

    def check_unknown(self, also_known: frozenset[str] = SCRIPT_VARIABLES) -> None:
        """Fail on a ``.env`` line naming a LABELHUB_ variable nothing reads."""
        for name, entry in sorted(self.file.items(), key=lambda item: item[1].line):
            if name.startswith(PREFIX) and name not in self.read and name not in also_known:
                raise EnvError(
                    f"{self.path}:{entry.line}: unknown variable {name} (see README, Configuration)"
                )

    def exports(self) -> list[str]:
        """``export NAME=value`` shell lines for the file's variables the environment lacks."""
        return [
            f"export {name}={shlex.quote(entry.value)}"
            for name, entry in self.file.items()
            if name not in self.environ
        ]


def main(argv: list[str]) -> int:
    """``python -m labelhub.env export|get NAME [DEFAULT]`` for the shell scripts."""
    base_dir = Path(__file__).resolve().parent.parent
    try:
        env = Env(default_env_file(base_dir))
    except EnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if argv[:1] == ["export"]:
        print("\n".join(env.exports()))
        return 0
    if argv[:1] == ["get"] and len(argv) in (2, 3):
        print(env.str(argv[1], argv[2] if len(argv) == 3 else ""))
        return 0
    print("usage: python -m labelhub.env export | get NAME [DEFAULT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
