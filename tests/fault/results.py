"""A fault's figures as JSON under ``test-artifacts/fault/`` (read back by ``report.py``)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.checker import OUT_OF_ORDER

from .scenario import Outcome

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "fault"


def figures(outcome: Outcome) -> dict[str, Any]:
    f, t, report = outcome.figures, outcome.times, outcome.report
    assert report is not None
    inject, restore = t["inject"], t["restore"]
    during = [lat for offered, lat in f.acks if inject <= offered <= restore]
    return {
        "fault": outcome.fault.name, "title": outcome.fault.title,
        "profile": outcome.profile.name, "rate_offered_per_s": outcome.profile.rate,
        "clients": outcome.profile.clients, "chat_size": outcome.profile.chat_size,
        "window_s": outcome.profile.window_s, "fault_lasted_s": round(restore - inject, 2),
        "offered": f.offered, "shed": f.shed, "writes": f.writes, "acked": f.acked,
        "errors": f.errors, "error_codes": f.error_codes, "failed_final": f.failed_final,
        "connection_lost": f.connection_lost,
        "acked_during_fault": sum(1 for a in f.answers_at if inject <= a <= restore),
        "reconnects": f.reconnects, "connect_failures": f.connect_failures,
        "sync_required": f.sync_required,
        "ack_p50_ms": _ms(_quantile([lat for _, lat in f.acks], 0.50)),
        "ack_p99_ms": _ms(_quantile([lat for _, lat in f.acks], 0.99)),
        "ack_p99_during_fault_ms": _ms(_quantile(during, 0.99)),
        "max_ack_gap_s": round(_max_gap(f.answers_at, inject, t["end"]), 2),
        "recovered_after_s": round(_recovered_after(f.answers_at, restore,
                                                    max(t["end"], restore + 1),
                                                    outcome.profile.rate), 2),
        "still_pending": outcome.notes.pop("still_pending", []),
        "drained": outcome.drained, "synced_clients": outcome.synced,
        "redeliveries": report.redeliveries, "checker": report.counts, "check_ok": report.ok,
        "out_of_order_voids": len(late_voids(outcome)), "late_voids_ok": outcome.fault.late_voids,
        "exited": outcome.exited, "notes": outcome.notes,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
    }


def late_voids(outcome: Outcome) -> list[Any]:
    """The out-of-order arrivals that are ``void`` events (placeholders of skipped numbers)."""
    assert outcome.report is not None
    kinds = {(e.chat_id, e.seq): e.event for e in outcome.stored}
    return [f for f in outcome.report.faults[OUT_OF_ORDER]
            if kinds.get((f.chat_id, f.seq)) == "void"]


def write(outcome: Outcome) -> dict[str, Any]:
    data = figures(outcome)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{data['profile']}-{data['fault']}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _max_gap(answers: list[float], start: float, end: float) -> float:
    """The longest time without any ack between ``start`` and ``end``."""
    points = [start, *sorted(a for a in answers if start <= a <= end), end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def _recovered_after(answers: list[float], start: float, end: float, rate: float) -> float:
    """From ``start`` (the fault lifted) to the end of the first 1-s bucket acking at least
    half the offered rate: when throughput was back."""
    buckets = max(int(end - start), 1)
    counts = [0] * buckets
    for answer in answers:
        if start <= answer < start + buckets:
            counts[int(answer - start)] += 1
    back = [i for i, count in enumerate(counts) if count >= rate / 2]
    return float(back[0] + 1) if back else float(buckets)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
