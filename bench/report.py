"""BENCHMARKS.md sections: each benchmark owns the text between its two markers."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "uncommitted"


def write_section(path: Path, name: str, command: str, body: str) -> None:
    """Replace (or append) the ``<!-- name:start -->…<!-- name:end -->`` section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = (f"{start}\nCommand: `{command}`, {datetime.date.today()}, commit {commit()}.\n\n"
               f"{body}\n{end}")
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old:
        head, _, rest = old.partition(start)
        _, _, tail = rest.partition(end)
        path.write_text(head + section + tail)
    else:
        path.write_text(old.rstrip("\n") + f"\n\n## {name}\n\n{section}\n")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
