"""Turn the fault results (``test-artifacts/fault/<profile>-*.json``) into the tables of
``docs/reliability.md``, between its ``fault-results`` markers.

    python -m tests.fault.report             # full-profile results into the doc
    python -m tests.fault.report --profile short --print
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "fault"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-results:begin -->", "<!-- fault-results:end -->"
ORDER = ["kill-auth", "kill-gateway", "kill-router", "kill-history", "kill-delivery_retry",
         "nats-restart", "redis-down", "redis-flushall", "mysql-down", "mysql-hang"]
ROWS = [
    ("offered / acked (sends)", lambda r: f"{r['offered']} / {r['acked']}"),
    ("offered rate (msg/s), clients, load window", lambda r: (
        f"{r['rate_offered_per_s']:g}, {r['clients']} in chats of {r['chat_size']}, "
        f"{r['window_s']:g} s")),
    ("fault lasted (inject → restored)", lambda r: f"{r['fault_lasted_s']} s"),
    ("acked while the fault lasted", lambda r: r["acked_during_fault"]),
    ("error answers by code (retried, same id) / final failures",
     lambda r: f"{_codes(r)} / {r['failed_final']}"),
    ("writes lost with a socket (resent, same id)", lambda r: r["connection_lost"]),
    ("reconnects (failed attempts)", lambda r: f"{r['reconnects']} ({r['connect_failures']})"),
    ("ack latency p50 / p99 (whole run)", lambda r: f"{r['ack_p50_ms']} / {r['ack_p99_ms']} ms"),
    ("ack latency p99, sends offered during the fault", lambda r: _ms(r["ack_p99_during_fault_ms"])),
    ("longest time without any ack", lambda r: f"{r['max_ack_gap_s']} s"),
    ("acks back to ≥ half the offered rate, after the fault was lifted",
     lambda r: f"{r['recovered_after_s']} s"),
    ("redeliveries (repeats clients dropped)", lambda r: r["redeliveries"]),
    ("checker: lost, duplicated, out of order, gaps, unanswered, mismatch", lambda r: ", ".join(
        str(r["checker"][k]) for k in ("lost", "duplicated", "out_of_order", "gaps",
                                        "unanswered", "mismatch"))),
    ("… of the out of order: late voids", lambda r: r.get("out_of_order_voids", 0)),
    ("every client synced complete / processes exited",
     lambda r: f"{r['synced_clients']}/{r['clients']} / {', '.join(r['exited']) or 'none'}"),
]


def _codes(result: dict[str, Any]) -> str:
    codes = result.get("error_codes") or {}
    detail = ", ".join(f"{n}× {code}" for code, n in sorted(codes.items()))
    return f"{result['errors']} ({detail})" if detail else str(result["errors"])


def _ms(value: Any) -> str:
    return "–" if value is None else f"{value} ms"


def load(profile: str) -> list[dict[str, Any]]:
    found = {}
    for path in ARTIFACTS.glob(f"{profile}-*.json"):
        data = json.loads(path.read_text())
        found[data["fault"]] = data
    return [found[name] for name in sorted(found, key=lambda n: (ORDER + [n]).index(n))]


def render(results: list[dict[str, Any]]) -> str:
    if not results:
        return "_No results yet: run `make test-fault`, then `python -m tests.fault.report`._"
    dates = sorted({r["date"] for r in results})
    commits = sorted({r["commit"] for r in results if r["commit"]})
    lines = [f"Measured with `make test-fault` (profile `{results[0]['profile']}`) from "
             f"{dates[0]} to {dates[-1]}, commit {', '.join(commits) or 'unknown'}; regenerated "
             "by `python -m tests.fault.report`.", ""]
    for result in results:
        lines += [f"### {result['fault']}: {result['title']}", "",
                  f"Outcome: **{_outcome(result)}**", "",
                  "| figure | value |", "|---|---|"]
        lines += [f"| {label} | {value(result)} |" for label, value in ROWS]
        notes = result.get("notes") or {}
        for key, value in notes.items():
            lines.append(f"| {key.replace('_', ' ')} | {_note(value)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _note(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _outcome(result: dict[str, Any]) -> str:
    checker = dict(result["checker"])
    disorder = checker.pop("out_of_order")
    if any(checker.values()) or not result["drained"] or result["exited"] \
            or result["synced_clients"] != result["clients"] or result["failed_final"]:
        return "FAILED"
    if not disorder:
        return "passed"
    strict = not result.get("late_voids_ok")
    return ("FAILED: " if strict else "known limit, xfail: ") + \
        f"{disorder} events arrived after later ones"


def write_doc(body: str, doc: Path = DOC) -> None:
    text = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{doc} has no {BEGIN} … {END} markers")
    doc.write_text(pattern.sub(lambda _: f"{BEGIN}\n{body}{END}", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--print", action="store_true", help="print instead of writing the doc")
    args = parser.parse_args()
    body = render(load(args.profile))
    if args.print:
        print(body)
    else:
        write_doc(body)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
