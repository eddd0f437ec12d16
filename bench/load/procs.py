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


RATE_HZ = 200


class Profile:
    """``py-spy record`` of one process for a while, as collapsed stacks (raw format)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out, self.process = out, None
        spy = py_spy()
        if spy and os.geteuid() == 0:
            self.process = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE_HZ),
                 "--format", "raw", "--gil", "--nonblocking", "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def samples(self) -> int:
        lines = self.out.read_text().splitlines() if self.out.exists() else []
        return sum(int(count) for _, _, count in (line.rpartition(" ") for line in lines)
                   if count.isdigit())

    def top(self, n: int = 10) -> dict[str, list[tuple[str, float]]]:
        """Shares of the samples: the frames with most own time, and the project's
        functions (services/, libs/) with most inclusive time."""
        own: collections.Counter[str] = collections.Counter()
        ours: collections.Counter[str] = collections.Counter()
        total = 0
        for line in self.out.read_text().splitlines() if self.out.exists() else []:
            stack, _, count = line.rpartition(" ")
            frames = [f for f in stack.split(";") if f]
            if not frames or not count.isdigit():
                continue
            total += int(count)
            own[short(frames[-1])] += int(count)
            for frame in {short(f, line=False) for f in frames if "(services/" in f or "(libs/" in f}:
                ours[frame] += int(count)
        return {kind: [(f, c / total) for f, c in counter.most_common(n)]
                for kind, counter in (("own", own), ("project", ours))} if total else {}


def short(frame: str, line: bool = True) -> str:
    """``func (/long/path/to/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``, or without ``:12``."""
    name, _, where = frame.partition(" (")
    place = "/".join(where.rstrip(")").split("/")[-2:])
    return f"{name} ({place if line else place.rpartition(':')[0]})" if where else name
