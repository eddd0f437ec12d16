"""The client worker processes of one run, and the live progress line."""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clients import Pair, worker_main


def progress(text: str) -> None:
    """The live line on stderr: rewritten in place."""
    sys.stderr.write("\r\033[K" + text)
    sys.stderr.flush()


@dataclass
class Fleet:
    processes: list[Any]
    orders: list[Any]
    inbox: Any
    pairs: int

    @classmethod
    def start(cls, pairs: list[Pair], relay: bool, workers: int) -> Fleet:
        """``workers`` processes, the pairs dealt out among them; once all are connected
        (allowing 20 handshakes/s: a loaded shared machine)."""
        ctx = multiprocessing.get_context("spawn")
        inbox = ctx.Queue()
        shares = [pairs[w::workers] for w in range(workers) if pairs[w::workers]]
        orders = [ctx.Queue() for _ in shares]
        processes = [ctx.Process(target=worker_main, args=(share, relay, box, inbox), daemon=True)
                     for share, box in zip(shares, orders, strict=True)]
        for process in processes:
            process.start()
        fleet = cls(processes, orders, inbox, len(pairs))
        fleet.gather("ready", 120 + len(pairs) / 10)
        return fleet

    def ask(self, command: tuple[Any, ...], timeout: float,
            watch: Callable[[float], str] | None = None) -> list[Any]:
        for box in self.orders:
            box.put(command)
        return self.gather(command[0], timeout, watch)

    def gather(self, tag: str, timeout: float,
               watch: Callable[[float], str] | None = None) -> list[Any]:
        """One answer per worker; ``watch(elapsed)`` feeds the progress line meanwhile."""
        answers: list[Any] = []
        started = time.monotonic()
        while len(answers) < len(self.orders):
            elapsed = time.monotonic() - started
            if watch:
                progress(watch(elapsed))
            try:
                got, payload = self.inbox.get(timeout=0.5)
            except queue.Empty:
                if elapsed > timeout or not all(p.is_alive() for p in self.processes):
                    raise TimeoutError(f"{tag}: {len(answers)} of {len(self.orders)} "
                                       "workers answered") from None
                continue
            if got != tag:
                raise RuntimeError(f"expected {tag!r} from a worker, got {got!r}")
            answers.append(payload)
        return answers

    def finish(self) -> list[Any]:
        """Every worker's recorder snapshot (None on the relay); the processes end."""
        try:
            return self.ask(("finish",), 120)
        finally:
            self.stop()

    def stop(self) -> None:
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
