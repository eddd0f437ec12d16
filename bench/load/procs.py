"""What the server processes spent: CPU seconds and RSS from /proc, and a py-spy profile."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.delivery_load import cpu_of, cpu_seconds, service_pids
from tools.stack import Stack

__all__ = ["cpu_of", "cpu_seconds", "rss_kib", "service_pids", "stack_pids", "Profile"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def stack_pids(stack: Stack) -> dict[str, int]:
    """Every service process (replicas too) and the stack's nats-server."""
    return service_pids(stack)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profile:
    """``py-spy record`` of one process for a while, as collapsed stacks (raw format)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out, self.process = out, None
        spy = py_spy()
        if spy and os.geteuid() == 0:
            self.process = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
                 "--format", "raw", "--nonblocking", "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def top(self, n: int = 12) -> list[tuple[str, float, float]]:
        """(frame, self share, inclusive share) of the ``n`` frames with most inclusive time
        in project code, ordered by self time among them."""
        if not self.out.exists():
            return []
        own: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [short(f) for f in stack.split(";") if f]
            if not frames or not count.isdigit():
                continue
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        hot = [f for f, _ in own.most_common(n)]
        return [(f, own[f] / total, inclusive[f] / total) for f in hot] if total else []


def short(frame: str) -> str:
    """``func (/long/path/to/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name
