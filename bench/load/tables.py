"""The Markdown of a load run: goals against measured figures, steps, profile, scaling."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from bench.report import table

from .procs import RATE_HZ
from .steps import P99_GOAL_MS, sustained

HISTORY_ROW = re.compile(r"^\| \((a|b)\) [^|]*\| [^|]*\| ([0-9.]+) \|", re.M)
HISTORY_LOADED = re.compile(r"^([0-9,]+) events in [0-9,]+ chats", re.M)


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def at_rate(run_steps: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    return next((s for s in run_steps if s["offered"] == rate), None)


def history_p99(benchmarks: Path) -> dict[str, str]:
    """The latest history figures from BENCHMARKS.md (its own bench), and under "rows" how
    many events it had loaded."""
    text = benchmarks.read_text() if benchmarks.exists() else ""
    found = {kind: p99 for kind, p99 in HISTORY_ROW.findall(text)}
    if loaded := HISTORY_LOADED.search(text):
        found["rows"] = loaded.group(1)
    return found


def sustained_text(run_steps: list[dict[str, Any]]) -> str:
    rate = sustained(run_steps)
    if not rate:
        first = run_steps[0]
        return f"none held (p99 {first['p99']:,.0f} ms at {first['offered']:,.0f} msg/s)"
    top = max(s["offered"] for s in run_steps)
    return f"{rate:,.0f}" + (" (every step held: a floor)" if rate == top else "")


def cpu_ratio_row(product: dict[str, Any], relay: dict[str, Any]) -> list[str]:
    """Server CPU per message against the relay's at the same offered rate: the best step
    that delivered everything (fixed costs weigh less at higher rates)."""
    pairs = [(s, r) for s in product["steps"] if (r := at_rate(relay["steps"], s["offered"]))
             and s["missing"] == 0 and s["refused"] == 0] or \
            [(product["steps"][0], relay["steps"][0])]
    ours, base = min(pairs, key=lambda p: p[0]["cpu_ms_per_msg"] / p[1]["cpu_ms_per_msg"])
    times = ours["cpu_ms_per_msg"] / base["cpu_ms_per_msg"]
    return ["1 durable 1:1", f"server CPU per message (ms) at {ours['offered']:,.0f} msg/s",
            f"{ours['cpu_ms_per_msg']:.2f}", f"{base['cpu_ms_per_msg']:.3f}", f"{times:.1f}×",
            "≤ 4×", mark(times <= 4)]


def rate_rows(product: dict[str, Any], relay: dict[str, Any]) -> list[list[str]]:
    ours, base = sustained(product["steps"]), sustained(relay["steps"])
    at_1000 = at_rate(product["steps"], 1000)
    return [
        ["1 durable 1:1", f"sustained msg/s (p99 < {P99_GOAL_MS:.0f} ms, 0 missing)",
         sustained_text(product["steps"]), sustained_text(relay["steps"]), ratio(ours, base),
         "≥ 2,000", mark(ours >= 2000)],
        ["1 durable 1:1", "p99 at 1,000 msg/s offered (ms)",
         f"{at_1000['p99']:,.1f}" if at_1000 else "not reached", "", "", "< 20",
         mark(at_1000 is not None and at_1000["p99"] < 20)],
        peak_row(product, relay), cpu_ratio_row(product, relay)]


def peak_row(product: dict[str, Any], relay: dict[str, Any]) -> list[str]:
    ours = max(s["achieved"] for s in product["steps"])
    base = max(s["achieved"] for s in relay["steps"])
    return ["1 durable 1:1", "highest achieved msg/s, any latency", f"{ours:,.0f}", f"{base:,.0f}",
            ratio(ours, base), "", ""]


def opened_text(found: dict[str, Any]) -> str:
    cut, held = found.get("cut_at_s"), found.get("held", found["opened"])
    return (f"{held:,} of {found['wanted']:,}" + (f" (cut at {cut:.0f} s)" if cut else "")
            + (f" ({found['opened'] - held:,} more opened, closed by then)"
               if held < found["opened"] else ""))


def idle_rows(product: dict[str, Any], relay: dict[str, Any]) -> list[list[str]]:
    ours, base = product.get("idle"), relay.get("idle")
    if not ours or not base:
        return []
    return [
        ["2 idle", "WebSockets open on one gateway", opened_text(ours),
         f"{base['opened']:,}", "", "≥ 19,000", mark(ours.get("held", ours["opened"]) >= 19000)],
        *memory_and_rate("2 idle", "RSS per connection (KiB)", ours, base)]


def memory_and_rate(scenario: str, memory: str, ours: dict[str, Any],
                    base: dict[str, Any] | None) -> list[list[str]]:
    def of_base(key: str, form: str) -> str:
        return format(base[key], form) if base else ""
    return [
        [scenario, memory, f"{ours['kib_per_connection']:.1f}", of_base("kib_per_connection", ".1f"),
         ratio(ours["kib_per_connection"], base["kib_per_connection"]) if base else "", "≤ 24",
         mark(ours["kib_per_connection"] <= 24)],
        [scenario, "connects/s (token check + session + presence)", f"{ours['connects_per_s']:,.0f}",
         of_base("connects_per_s", ",.0f"),
         ratio(ours["connects_per_s"], base["connects_per_s"]) if base else "", "≥ 1,000",
         mark(ours["connects_per_s"] >= 1000)]]


def spread_rows(product: dict[str, Any], relay: dict[str, Any]) -> list[list[str]]:
    """Scenario 2b: the sockets dealt over several gateway processes; the relay holds the
    same count on one process when a process may open that many files."""
    ours, base = product.get("idle_spread"), relay.get("idle_spread")
    if not ours:
        return []
    name = f"2b idle, {ours['gateways']} gateways"
    return [
        [name, f"WebSockets open across {ours['gateways']} gateway processes",
         opened_text(ours), f"{base['opened']:,} (one process)" if base else "– (over one process's 20,000 files)",
         "", "≥ 50,000", mark(ours.get("held", ours["opened"]) >= 50000)],
        *memory_and_rate(name, "RSS per connection (KiB), worst gateway", ours, base)]


def idle_detail(product: dict[str, Any]) -> str:
    """Per gateway process: sockets, RSS growth, open files; and how the tokens were made."""
    parts = []
    for key in ("idle", "idle_spread"):
        if found := product.get(key):
            parts.append(("One gateway" if key == "idle" else f"{len(found['servers'])} gateways")
                         + f" ({found['workers']} client processes): " + "; ".join(
                f"{name} {s.get('held', s['opened']):,} sockets held, RSS {s['rss_before_kib'] / 1024:,.0f} → "
                f"{s['rss_after_kib'] / 1024:,.0f} MiB ({s['kib_per_connection']:.1f} KiB each), "
                f"{s['open_files']:,} open files" for name, s in found["servers"].items()))
    if tokens := product.get("idle_tokens"):
        parts.append(f"Tokens for the idle sockets (register + login through the API, not in "
                     f"the connect rate): {tokens['tokens']:,} in {tokens['seconds']:,.0f} s "
                     f"({tokens['per_s']:,.0f}/s, {tokens['devices_per_user']} devices per user)")
    return "Idle sockets: " + ". ".join(parts) + "." if parts else ""


def other_rows(product: dict[str, Any], history: dict[str, str]) -> list[list[str]]:
    rows = []
    fan = product.get("fanout")
    if fan and "error" in fan:
        rows.append(["3 group", f"{fan['members']:,} members", f"failed: {fan['error']}", "", "",
                     "< 200 ms p99", "✗"])
    elif fan:
        rows += [["3 group", f"last delivery p99 (ms), {fan['members']:,} members",
                  f"{fan['p99']:,.0f}", "", "", "< 200", mark(fan["p99"] < 200)],
                 ["3 group", "deliveries/s through one gateway", f"{fan['rate']:,.0f}", "", "",
                  "≥ 25,000", mark(fan["rate"] >= 25000)]]
    for kind, goal, name in (("a", 10, "cached"), ("b", 50, "MySQL")):
        if kind in history:
            loaded = history.get("rows", "?")
            rows.append(["4 history", f"page of 50, {name}, p99 (ms; bench.history, {loaded} rows)",
                         history[kind], "", "", f"< {goal}", mark(float(history[kind]) < goal)])
    if backlog := product.get("backlog"):
        worst = max(r["drain"] for r in backlog) * 1000
        rows.append(["5 reconnect", "1,000 pending drained (ms, worst round)", f"{worst:,.0f}",
                     "", "", "< 1,000", mark(worst < 1000)])
    if again := product.get("reconnect"):
        rows.append(["6 reconnect", f"{again['clients']:,} clients back within "
                     f"{again['spread_s']:.0f} s: missing / p99 to first message (ms)",
                     f"{again['missing']} / {again['first_p99']:,.0f}", "", "",
                     "0 lost (5,000 clients)", mark(again["missing"] == 0)])
    return rows


def summary(product: dict[str, Any], relay: dict[str, Any], history: dict[str, str]) -> str:
    return table(["scenario", "measure", "natterjack", "relay", "ratio", "goal", "met"],
                 rate_rows(product, relay) + idle_rows(product, relay) + spread_rows(product, relay)
                 + other_rows(product, history))


def step_table(product: dict[str, Any], relay: dict[str, Any]) -> str:
    rows = []
    for rate in sorted({s["offered"] for s in product["steps"] + relay["steps"]}):
        ours, base = at_rate(product["steps"], rate), at_rate(relay["steps"], rate)
        rows.append([f"{rate:,.0f}", *step_cells(ours), *step_cells(base, short=True),
                     ratio(ours["p99"], base["p99"]) if ours and base else "",
                     ratio(ours["cpu_ms_per_msg"], base["cpu_ms_per_msg"]) if ours and base else ""])
    return table(["offered msg/s", "achieved", "p50", "p90", "p99 (ms)", "missing", "CPU ms/msg",
                  "held", "relay achieved", "relay p99", "relay CPU ms/msg", "p99 ratio",
                  "CPU ratio"], rows)


def step_cells(step: dict[str, Any] | None, short: bool = False) -> list[str]:
    if step is None:
        return ["–"] * (3 if short else 7)
    if short:
        return [f"{step['achieved']:,.0f}", f"{step['p99']:.1f}", f"{step['cpu_ms_per_msg']:.3f}"]
    return [f"{step['achieved']:,.0f}", f"{step['p50']:.1f}", f"{step['p90']:.1f}",
            f"{step['p99']:.1f}", str(step["missing"]), f"{step['cpu_ms_per_msg']:.2f}",
            mark(step["held"])]


def cpu_table(run: dict[str, Any]) -> str:
    """CPU seconds per server process and step: who carries the load."""
    names = list(run["steps"][0]["cpu_s"])
    rows = [[f"{s['offered']:,.0f}", *(f"{s['cpu_s'][n]:.1f}" for n in names),
             f"{sum(s['cpu_s'].values()):.1f}", f"{s['client_cpu_s']:.1f}",
             f"{s['load_average']:.1f}" if "load_average" in s else "–"] for s in run["steps"]]
    return table(["offered msg/s", *(n.replace("_", "-") for n in names), "all servers",
                  "client processes", "load average (1 min) after"], rows)


def profile_table(product: dict[str, Any]) -> str:
    found = product.get("profile")
    if not found or not found["top"]:
        return "No profile taken (py-spy missing or not root)."
    own, ours = found["top"]["own"], found["top"]["project"]
    rows = [[f"`{a[0]}`" if a else "", f"{a[1] * 100:.1f} %" if a else "",
             f"`{b[0]}`" if b else "", f"{b[1] * 100:.1f} %" if b else ""]
            for a, b in itertools.zip_longest(own, ours)]
    others = "; ".join(f"{name}: " + ", ".join(f"`{f}` {share * 100:.0f} %" for f, share in top)
                       for name, top in found.get("others", {}).items())
    return (f"Profile: py-spy of {found['service']} (the service with most CPU in the first step) "
            f"during that step, samples taken while it held the GIL ({found.get('samples', '?')} "
            f"at {RATE_HZ} Hz); shares of the samples:\n\n"
            + table(["frame (own time)", "share", "project function (inclusive)", "share"], rows)
            + (f"\n\nThe other services' project functions with most inclusive time: {others}."
               if others else ""))
