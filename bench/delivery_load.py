"""Redelivery overhead: a steady message rate from several senders to several online
recipients, with every ack sent, and with 10 % of acks left out.

Each run gets a fresh stack with a short redelivery backoff (DLV_ENV). SENDERS x
RECIPIENTS direct chats; each sender sends bursts of BURST messages to its chats in turn,
paced to the total rate. Recipients ack every event as it arrives (cumulative: the highest
seq held without a hole). Acks are cumulative, so one lost ack is made good by the next;
a drop that costs redelivery is a chat left unacked: with drops, a recipient leaves out
the ack of a burst's last event and every later ack of that chat ("silence") until
delivery-retry resends an event it already holds, starting silences while fewer than 10 %
of its acks were left out. Senders and recipients run in two processes of their own
(:mod:`bench.delivery_clients`), so the services' CPU seconds, read from /proc/<pid>/stat
over the run, are theirs alone.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import trio

from tools.stack import Stack, isolated_stack

from . import report
from .delivery_clients import Plan, recipients_main, senders_main
from .handshake import users_with_ids

CHEAP_ARGON2 = {"NJ_ARGON2_TIME_COST": "1", "NJ_ARGON2_MEMORY_KIB": "8"}
DLV_ENV = {"NJ_DLV_BACKOFF_S": "0.2,0.4,0.8", "NJ_DLV_MAX_ATTEMPTS": "6",
           "NJ_DLV_SCAN_INTERVAL_MS": "50"}
SENDERS = 8
RECIPIENTS = 8
BURST = 5
CPU_OF = ("gateway", "router", "history", "delivery_retry", "auth", "nats-server")


# ---- CPU seconds of the processes this one started -----------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nats_pid() -> int:
    """The nats-server this process started (isolated_stack runs exactly one)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text.rpartition(")")[2].split()
        if comm == "nats-server" and int(fields[1]) == os.getpid():
            return int(stat.parent.name)
    raise RuntimeError("no nats-server child found")


def service_pids(stack: Stack) -> dict[str, int]:
    return {**{name: p.pid for name, p in stack.processes.items()}, "nats-server": nats_pid()}


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def counter(stack: Stack, service: str, name: str) -> float:
    """A counter from a service's /metrics (summed over labels given in ``name``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports[service]}/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = re.compile(rf"^{re.escape(name)}\s+([0-9.e+]+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


# ---- one run ---------------------------------------------------------------------------
async def make_plan(api: str, ws_url: str, rate: float, seconds: float, drop: float) -> Plan:
    people = await users_with_ids(api, SENDERS + RECIPIENTS)
    senders, recipients = people[:SENDERS], people[SENDERS:]
    sender_chats: list[list[str]] = [[] for _ in senders]
    recipient_chats: list[list[str]] = [[] for _ in recipients]
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for s, (token, _) in enumerate(senders):
            for r, (_, user_id) in enumerate(recipients):
                answer = await http.post("/api/v1/chats", headers={"Authorization": f"Bearer {token}"},
                                         json={"type": "direct", "members": [user_id]})
                assert answer.status_code in (200, 201), answer.text
                sender_chats[s].append(answer.json()["chat_id"])
                recipient_chats[r].append(answer.json()["chat_id"])
    return Plan(ws_url, [(t, c) for (t, _), c in zip(senders, sender_chats, strict=True)],
                [(t, c) for (t, _), c in zip(recipients, recipient_chats, strict=True)],
                rate, seconds, BURST, drop)


def expect(inbox: Any, tag: str, timeout: float) -> Any:
    try:
        got_tag, payload = inbox.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no {tag!r} from the client processes within {timeout:.0f}s") from None
    if got_tag != tag:
        raise RuntimeError(f"expected {tag!r}, got {got_tag!r}: {payload}")
    return payload


def measure(drop: float, rate: float, seconds: float) -> dict[str, Any]:
    """One run on a fresh stack: client results, service CPU seconds, redelivery counters."""
    with isolated_stack({**CHEAP_ARGON2, **DLV_ENV}) as stack:
        plan = trio.run(make_plan, stack.api, stack.ws_url, rate, seconds, drop)
        pids = service_pids(stack)
        ctx = multiprocessing.get_context("spawn")
        to_recipients, to_senders, inbox = ctx.Queue(), ctx.Queue(), ctx.Queue()
        recipients = ctx.Process(target=recipients_main, args=(plan, to_recipients, inbox))
        senders = ctx.Process(target=senders_main, args=(plan, to_senders, inbox))
        recipients.start()
        try:
            expect(inbox, "recipients ready", 60)
            senders.start()
            expect(inbox, "senders ready", 60)
            resent_before = counter(stack, "gateway", "nj_redelivered_events_total")
            before, started = cpu_of(pids), time.monotonic()
            to_senders.put("go")
            sent = expect(inbox, "sent", seconds + 120)
            to_recipients.put(sent["last_seq"])
            received = expect(inbox, "received", 120)
            after, window = cpu_of(pids), time.monotonic() - started
            to_recipients.put("close")
            # setup (chat creation) resends happened before "go": only the window counts
            resent = counter(stack, "gateway", "nj_redelivered_events_total") - resent_before
        finally:
            for process in (senders, recipients):
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
    cpu = {name: after[name] - before[name] for name in pids}
    result = {"drop": drop, "sent": sent, "received": received, "cpu": cpu, "window": window,
              "gateway_resent": resent}
    print(f"run drop={drop}: {summary(result)}", flush=True)
    return result


def summary(run: dict[str, Any]) -> dict[str, Any]:
    sent, received = run["sent"], run["received"]
    return {"rate": sent["acked"] / sent["elapsed"], "acked": sent["acked"], "errors": sent["errors"],
            "p50": received["p50_ms"], "p99": received["p99_ms"], "ack_p50": sent["ack_p50_ms"],
            "unsent": received["unsent"], "unsent_share": received["unsent"] / max(1, received["events"]),
            "silences": received["silences"], "silence_p50": received["silence_p50_ms"],
            "silence_max": received["silence_max_ms"], "resent": received["resent"],
            "disorder": received["disorder"], "recipient_errors": received["errors"],
            "behind": received["chats_behind"], "failed": sent["delivery_failed"],
            "cpu": {k: round(v, 2) for k, v in run["cpu"].items()}, "window": round(run["window"], 1),
            "gateway_resent": run["gateway_resent"], "clients_cpu": sent["cpu"] + received["cpu"]}


# ---- report ----------------------------------------------------------------------------
def row(label: str, a: float, b: float, fmt: str = "{:,.0f}", ratio: bool = True) -> list[str]:
    return [label, fmt.format(a), fmt.format(b), f"{b / a:.2f}" if ratio and a else ""]


def load_rows(base: dict[str, Any], drops: dict[str, Any]) -> list[list[str]]:
    return [
        row("achieved rate (messages acked by router / s)", base["rate"], drops["rate"]),
        row("message_ack latency p50 (ms)", base["ack_p50"], drops["ack_p50"]),
        row("first arrival latency p50 (ms)", base["p50"], drops["p50"]),
        row("first arrival latency p99 (ms)", base["p99"], drops["p99"]),
        row("acks left out (share of events)", base["unsent_share"] * 100, drops["unsent_share"] * 100,
            "{:.1f} %", ratio=False),
        row("silences (chats left unacked until a resend)", base["silences"], drops["silences"],
            ratio=False),
        row("silence → resend arrived, p50 (ms)", base["silence_p50"], drops["silence_p50"],
            ratio=False),
        row("silence → resend arrived, max (ms)", base["silence_max"], drops["silence_max"],
            ratio=False),
        row("events resent by the gateway (counter)", base["gateway_resent"], drops["gateway_resent"],
            ratio=False),
        row("resent events received (seq already held)", base["resent"], drops["resent"], ratio=False)]


def cpu_rows(base: dict[str, Any], drops: dict[str, Any]) -> list[list[str]]:
    rows = [row(f"CPU s: {name.replace('_', '-')}", base["cpu"][name], drops["cpu"][name], "{:.2f}",
                ratio=base["cpu"][name] >= 0.1) for name in CPU_OF]  # auth idles: no ratio
    rows.append(row("CPU s: five services + nats-server", sum(base["cpu"].values()),
                    sum(drops["cpu"].values()), "{:.2f}"))
    rows.append(row("CPU s: the two client processes (not counted above)", base["clients_cpu"],
                    drops["clients_cpu"], "{:.2f}", ratio=False))
    rows.append(row("measured window (s)", base["window"], drops["window"], "{:.1f}", ratio=False))
    return rows


def checks_clean(run: dict[str, Any]) -> bool:
    return not (run["errors"] or run["disorder"] or run["recipient_errors"] or run["behind"]
                or run["failed"])


def median_of(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over runs (CPU per process likewise); checks must hold in all."""
    merged: dict[str, Any] = {key: statistics.median(s[key] for s in summaries)
                              for key in summaries[0] if key != "cpu"}
    merged["cpu"] = {name: statistics.median(s["cpu"][name] for s in summaries)
                     for name in summaries[0]["cpu"]}
    merged["clean"] = all(checks_clean(s) for s in summaries)
    return merged


def alternating(repeat: int) -> list[float]:
    """Drop shares in run order: all-acked and dropped alternate (ABBA), so a trend in the
    machine's load falls on both."""
    return [drop for i in range(repeat) for drop in ((0.0, 0.1) if i % 2 == 0 else (0.1, 0.0))]


def tables(runs: list[dict[str, Any]], rate: float, seconds: float) -> str:
    base = median_of([summary(r) for r in runs if r["drop"] == 0.0])
    drops = median_of([summary(r) for r in runs if r["drop"] > 0.0])
    head = (f"Redelivery at a target of {rate:,.0f} msg/s for {seconds:.0f} s: {SENDERS} senders → "
            f"{RECIPIENTS} recipients ({SENDERS * RECIPIENTS} direct chats), bursts of {BURST}; "
            f"{', '.join(f'{k}={v}' for k, v in DLV_ENV.items())}; median of {len(runs) // 2} "
            "runs each, on fresh stacks, in ABBA order.\n\n")
    clean = "yes" if base["clean"] and drops["clean"] else "NO"
    tail = (f"\n\nEvery chat complete and acked at the end, no event out of order, no send "
            f"refused, no delivery_failed, in every run: {clean}.")
    return head + report.table(["measure", "all acks sent", "10 % acks dropped", "dropped / all"],
                               load_rows(base, drops) + cpu_rows(base, drops)) + tail
