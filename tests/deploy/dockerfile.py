"""A small reader of Dockerfiles: instructions with their arguments, grouped by stage.

Enough of the Dockerfile syntax for the project's own files: comments, line continuations
(`\\`), parser directives, exec form (a JSON array) and shell form, `ARG` before the first
`FROM`, `FROM image [AS name]`, `--flags` of COPY/ADD. Unknown instructions are an error.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}


class DockerfileError(ValueError):
    """The text is not a Dockerfile this reader understands."""


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of CMD/ENTRYPOINT/RUN, or None for the shell form."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DockerfileError(f"line {self.line}: exec form must be a list of strings")
        return value

    def words(self) -> list[str]:
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, text: str) -> str:
        """``${NAME}`` / ``$NAME`` of the global ARGs replaced by their defaults."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: self.global_args.get(m.group(1) or m.group(2), m.group(0)), text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, joined text) of each instruction; comments and blanks dropped."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # a comment (also inside a continued instruction), or a blank line
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        result.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: continuation at the end of the file")
    return result


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword not in INSTRUCTIONS:
            raise DockerfileError(f"line {number}: unknown instruction {keyword!r}")
        if not args:
            raise DockerfileError(f"line {number}: {keyword} without arguments")
        if keyword == "FROM":
            stages.append(_stage(number, args))
        elif not stages:
            if keyword != "ARG":
                raise DockerfileError(f"line {number}: only ARG may come before FROM")
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(Instruction(number, keyword, args))
    if not stages:
        raise DockerfileError("no FROM")
    return Dockerfile(global_args, stages)


def _stage(number: int, args: str) -> Stage:
    words = [w for w in args.split() if not w.startswith("--")]
    if len(words) == 1:
        return Stage(words[0], None)
    if len(words) == 3 and words[1].upper() == "AS":
        return Stage(words[0], words[2])
    raise DockerfileError(f"line {number}: FROM image [AS name], got {args!r}")


def copy_sources(instruction: Instruction) -> list[str]:
    """The source paths of a COPY/ADD (flags and the destination left out)."""
    words = [w for w in instruction.words() if not w.startswith("--")]
    return words[:-1]
