"""Load tool: the product against a bare relay, the same clients, the same run.

    python -m bench.load [--pairs N] [--workers N] [--rates R,R,...] [--seconds S]
                         [--idle N] [--idle-gateways G] [--idle-spread N]
                         [--idle-seconds S] [--members N] [--messages N] [--backlog-rounds N]
                         [--no-horizontal] [--no-profile] [--smoke] [--out DIR]
                         [--write BENCHMARKS.md] [--report-only]

Starts its own servers (the relay, then isolated stacks: own nats-server, database and
Redis prefix; MySQL/Redis from NJ_MYSQL_* / NJ_REDIS_URL), runs the scenarios, checks
every product run with the history checker, writes DIR/load.json, DIR/load.md and
DIR/load.png, and exits non-zero when a check failed (a message lost, duplicated or out
of order). See BENCHMARKS.md (section load) for the scenarios and what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench import report

from . import notes, plot, runs, tables
from .idle_runs import ONE_PROCESS_MAX

SMOKE = ["--pairs", "5", "--workers", "1", "--rates", "20", "--seconds", "2", "--idle", "20",
         "--idle-gateways", "2", "--idle-spread", "30", "--members", "0", "--backlog-rounds", "0", "--no-horizontal", "--no-profile"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=250, help="sender/recipient pairs")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--rates", default="50,100,200,400,800,1600,3200", help="msg/s steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="per step")
    parser.add_argument("--idle", type=int, default=2000,
                        help=f"idle WebSockets on one gateway (0: skip; at most {ONE_PROCESS_MAX:,})")
    parser.add_argument("--idle-gateways", type=int, default=3,
                        help="gateway processes the --idle-spread sockets are dealt over")
    parser.add_argument("--idle-spread", type=int, default=6000,
                        help="idle WebSockets over --idle-gateways gateways (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=0.0,
                        help="stop opening idle sockets after S s and report what is open "
                             "(0: 60 s + 1 s per 20 sockets)")
    parser.add_argument("--members", type=int, default=500, help="group size (0: skip)")
    parser.add_argument("--messages", type=int, default=20, help="group messages")
    parser.add_argument("--backlog-rounds", type=int, default=3, help="1,000-pending drains")
    parser.add_argument("--no-horizontal", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="seconds: " + " ".join(SMOKE))
    parser.add_argument("--out", default="bench/results", help="where load.{json,md,png} go")
    parser.add_argument("--write", metavar="FILE", help="replace the load section of FILE")
    parser.add_argument("--report-only", action="store_true",
                        help="no runs: report OUT/load.json again (tables, plot, section)")
    args = parser.parse_args(argv + SMOKE if "--smoke" in argv else argv)
    if args.pairs / min(float(r) for r in args.rates.split(",")) > max(args.seconds, 30):
        parser.error("every pair sends at least once a step, so a step lasts at least "
                     "--pairs / rate seconds: raise the lowest of --rates")
    if args.idle > ONE_PROCESS_MAX or args.idle_spread > ONE_PROCESS_MAX * max(args.idle_gateways, 0):
        parser.error(f"a gateway process holds at most {ONE_PROCESS_MAX:,} sockets here "
                     "(20,000 open files): lower --idle / --idle-spread or add --idle-gateways")
    return args


def options(args: argparse.Namespace, out: Path) -> runs.Options:
    return runs.Options(args.pairs, args.workers, [float(r) for r in args.rates.split(",")],
                        args.seconds, args.idle, args.idle_gateways, args.idle_spread, args.idle_seconds,
                        args.members, args.messages, args.backlog_rounds,
                        not args.no_horizontal,
                        None if args.no_profile else out / "load-profile.txt")


def run_all(opts: runs.Options) -> dict[str, Any]:
    result: dict[str, Any] = {"relay": runs.relay_run(opts), "product": runs.product_run(opts)}
    if opts.horizontal:
        reached = len(result["product"]["steps"])
        result["horizontal"] = runs.horizontal_run(dataclasses.replace(opts, profile=None),
                                                   opts.rates[:reached + 1])
    return result


def failed(result: dict[str, Any]) -> list[str]:
    """What makes the run a failed one: a history check that found faults."""
    return [f"{name}: {result[name]['check']['summary'].splitlines()[0]}"
            for name in ("product", "horizontal")
            if name in result and not result[name]["check"]["ok"]]


def markdown(result: dict[str, Any], benchmarks: Path, png: str) -> str:
    product, relay, opts = result["product"], result["relay"], result["options"]
    faults = failed(result)
    load = result["load_average"]
    parts = [f"Taken {result['when']} (commit {result['commit']}) on a machine shared with other "
             f"work: load average {load[0]:.1f} before, {load[1]:.1f} after (2 cores).",
             "**Run: FAILED** — " + "; ".join(faults) if faults else
             "Run: history check ok (every acked message stored once and held once, in order, "
             "by its recipient).",
             tables.summary(product, relay, tables.history_p99(benchmarks)),
             *filter(None, [tables.idle_detail(product)]),
             f"Scenario 1 steps: {opts['pairs']} pairs ({2 * opts['pairs']} clients) in "
             f"{opts['workers']} client processes, {opts['seconds']:g} s per step; latency is "
             "send → first arrival (ms); 'held' = p99 < 50 ms, nothing missing after the drain, "
             "≥ 90 % of the offered rate achieved.",
             f"![latency percentiles against offered rate]({png})",
             tables.step_table(product, relay),
             "Server CPU seconds per process and step (product); at rest, every client "
             f"connected and nothing sent, the servers used {product['resting_cpu']:.2f} CPU "
             "s/s (counted in the per-message figures above):", tables.cpu_table(product),
             tables.profile_table(product)]
    if horizontal := result.get("horizontal"):
        parts += ["Two gateways and two routers (every message enters on one gateway and "
                  "leaves on the other): steps, then CPU seconds per process; events written "
                  "to sockets per gateway: " + ", ".join(
                      f"{g} {n:,.0f}" for g, n in horizontal["messages_out"].items()),
                  tables.step_table(horizontal, relay), tables.cpu_table(horizontal)]
    return "\n\n".join([*parts, notes.HOW, notes.SCALING])


def measure(args: argparse.Namespace, argv: list[str], out: Path) -> dict[str, Any]:
    """Every run, with what is needed to report it later (``--report-only``)."""
    opts = options(args, out)
    before = os.getloadavg()[0]
    result = run_all(opts)
    result.update(load_average=[before, os.getloadavg()[0]], commit=report.commit(),
                  when=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  options={**dataclasses.asdict(opts), "profile": str(opts.profile)},
                  command="make bench-load (python -m bench.load " + " ".join(argv) + ")")
    (out / "load.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def publish(result: dict[str, Any], out: Path, write: str | None) -> None:
    """load.png, load.md and, with ``write``, the load section of that Markdown file."""
    plot.latency_plot({"natterjack": result["product"]["steps"], "relay": result["relay"]["steps"],
                       **({"2 gw + 2 routers": result["horizontal"]["steps"]}
                          if "horizontal" in result else {})}, out / "load.png")
    benchmarks = Path(write or "BENCHMARKS.md")
    png = os.path.relpath(out / "load.png", benchmarks.resolve().parent)
    body = markdown(result, benchmarks, png)
    (out / "load.md").write_text(body + "\n")
    print(body)
    if write:
        report.write_section(benchmarks, "load", result["command"], body)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        result = json.loads((out / "load.json").read_text())
    else:
        result = measure(args, argv, out)
    publish(result, out, args.write)
    return 1 if failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
