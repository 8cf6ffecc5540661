"""Read the shell blocks of a README section and check a command's output against the README.

The format the README keeps (section "The loop, by hand"):
- a block fenced as ```sh is run; one fenced as ```sh illustration is not (it only illustrates);
- ``NAME="..."`` lines set shell variables the later commands of the section use;
- a command may continue over lines ending in ``\\``;
- comment lines under a command (``#   ...``) show its output: every such line must match a line of
  what the command printed, in order. Numbers (ids, counts, metrics) and hex hashes may differ,
  ``...`` elides anything, and a trailing ``-> /page/`` only says where to look;
- a comment line in parentheses, ``#   (a bar per epoch, then:)``, is prose, and one starting with
  ``$M`` (with its ``\\`` continuations) is a command shown but not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = re.compile(r"^```(\S*)(?:[ \t]+(\S+))?[ \t]*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
HEX = re.compile(r"\b[0-9a-f]{8,}\b")


@dataclass
class Command:
    text: str  # the command as written (continuations joined with their backslashes)
    expected: list[str] = field(default_factory=list)  # README lines showing its output
    shown: list[str] = field(default_factory=list)  # commented commands shown, not run


@dataclass
class Block:
    run: bool
    assignments: list[str]
    commands: list[Command]


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    start = markdown.index(f"## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def blocks(text: str) -> list[Block]:
    """The shell blocks of ``text`` (a README section), parsed into commands and expectations."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence and fence.group(1) in ("sh", "bash"):
            body = []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            found.append(_parse(body, run=fence.group(2) != "illustration"))
        i += 1
    return found


def _parse(body: list[str], *, run: bool) -> Block:
    assignments: list[str] = []
    commands: list[Command] = []
    in_shown = False
    i = 0
    while i < len(body):
        line = body[i]
        stripped = line.strip()
        i += 1
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            if in_shown:  # continuation of a commented command
                commands[-1].shown[-1] += "\n" + comment
                in_shown = comment.endswith("\\")
                continue
            if comment.startswith("$"):
                commands[-1].shown.append(comment)
                in_shown = comment.endswith("\\")
            elif not (comment.startswith("(") and comment.endswith(")")) and commands:
                commands[-1].expected.append(comment)
            continue
        text = line
        while text.endswith("\\") and i < len(body):
            text += "\n" + body[i]
            i += 1
        if ASSIGNMENT.match(stripped) and not commands:
            assignments.append(text)
        else:
            commands.append(Command(text=text))
    return Block(run=run, assignments=assignments, commands=commands)


def normalise(text: str) -> str:
    """One space for any run of whitespace, none just inside brackets: pretty-printed JSON and
    the README's one-line JSON compare equal."""
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([\]}])", r"\1", re.sub(r"([\[{]) ", r"\1", text))


def pattern(expected: str) -> re.Pattern | None:
    """A regex for one README output line: numbers and hashes vary, ``...`` is anything (lines
    included); None for a line that is only a ``-> /page/`` pointer."""
    shape = normalise(re.split(r"\s->\s|^->\s", expected, maxsplit=1)[0].strip())
    parts = []
    for fragment in shape.split("..."):
        fragment = fragment.strip()
        if not fragment:
            continue
        regex, last = [], 0
        for match in re.finditer(rf"{HEX.pattern}|{NUMBER.pattern}", fragment):
            regex.append(re.escape(fragment[last : match.start()]))
            regex.append(r"[0-9a-f]+" if HEX.fullmatch(match.group()) else r"\d+(?:\.\d+)?")
            last = match.end()
        regex.append(re.escape(fragment[last:]))
        parts.append(re.sub(r"(\\ )+", r"\\s+", "".join(regex)))
    return re.compile(".*?".join(parts), re.DOTALL) if parts else None


def unmatched(expected: list[str], output: str) -> list[str]:
    """README output lines the printed output does not show, in order ([] when all match)."""
    text = normalise(output)
    missing, position = [], 0
    for line in expected:
        regex = pattern(line)
        if regex is None:
            continue
        found = regex.search(text, position)
        if found is None:
            missing.append(line)
        else:
            position = found.end()
    return missing
