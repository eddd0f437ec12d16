"""history benchmark: im.history.page latency, cached and from MySQL, against a raw SELECT.

    python -m bench.history [--rows N] [--quick] [--write BENCHMARKS.md]

Loads N messages (default 1,000,000; --quick 20,000; ``--rows 10000000`` is the 10 M load,
same code, about 7 minutes here) over 1,000 chats into a fresh, uniquely named
database, with history's own INSERT statements (multi-row batches) — not through NATS:
the stream path is not what is measured here. Then starts history in-process with its
own nats-server and a unique Redis prefix and measures im.history.page (limit 50) over
2,000 sequential requests: (a) cached — the newest page of 100 hot chats, served from
Redis; (b) MySQL — random older pages below the cached window. The baseline is the same
page SELECT run directly with pymysql (no service, no bus). The database, the Redis keys
and the nats-server are removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pymysql
import redis
import trio

from libs import metrics, rpc
from libs.bus import open_bus
from libs.config import MySQLConfig
from libs.migrate import migrate
from libs.natsd import start_nats
from services.history import app
from services.history.config import load
from services.history.domain import decode_event, plan_page
from services.history.storage import page_args, page_sql
from services.history.writes import INSERT_EVENTS, UPSERT_CHAT, UPSERT_MEMBER

CHATS = 1_000
HOT_CHATS = 100
REQUESTS = 2_000
LIMIT = 50
LOAD_BATCH = 2_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "history" / "migrations"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike"]


def mysql_config(database: str) -> MySQLConfig:
    env = os.environ
    return MySQLConfig(env.get("NJ_MYSQL_HOST", "127.0.0.1"), int(env.get("NJ_MYSQL_PORT", "3306")),
                       env.get("NJ_MYSQL_USER", "root"), env.get("NJ_MYSQL_PASSWORD", ""), database, 8)


def connect(config: MySQLConfig, database: str | None = None) -> Any:
    return pymysql.connect(host=config.host, port=config.port, user=config.user,
                           password=config.password, database=database, charset="utf8mb4")


def event(chat: str, seq: int) -> bytes:
    if seq == 1:
        return orjson.dumps({"event": "chat_updated", "chat_id": chat, "seq": 1, "ts": 1_700_000_000_000,
                             "kind": "created", "actor_id": "u1", "details": {
                                 "type": "group", "name": None,
                                 "members": [{"user_id": "u1", "role": "owner"}, {"user_id": "u2", "role": "member"}]}})
    text = " ".join(random.choices(WORDS, k=8))
    return orjson.dumps({"event": "message", "chat_id": chat, "seq": seq, "ts": 1_700_000_000_000 + seq,
                         "message_id": f"{chat}-{seq}", "sender_id": "u1", "sender_device_id": "d1",
                         "client_msg_id": f"c{seq}", "content_type": "text", "content_version": 1,
                         "content": text, "metadata": None})


def load_rows(config: MySQLConfig, rows: int) -> tuple[list[str], int, float]:
    """Insert ``rows`` events over CHATS chats (seq dense from 1); returns chats, per chat, s."""
    per_chat = max(rows // CHATS, 2)
    chats = [f"bc{i:05d}" for i in range(CHATS)]
    conn = connect(config, config.database)
    start = time.perf_counter()
    with conn.cursor() as cur:
        pending: list[Any] = []
        for seq in range(1, per_chat + 1):  # seq-major: inserts spread like live traffic
            for chat in chats:
                stored = decode_event(event(chat, seq))
                pending.append(stored.columns())
                for change in stored.member_changes:
                    cur.execute(UPSERT_MEMBER, (chat, change.user_id, 1, 1, 1, 1, 1))
                if len(pending) >= LOAD_BATCH:
                    cur.executemany(INSERT_EVENTS, pending)
                    conn.commit()
                    pending.clear()
        if pending:
            cur.executemany(INSERT_EVENTS, pending)
        cur.executemany(UPSERT_CHAT, [(chat, per_chat) for chat in chats])
        conn.commit()
    conn.close()
    return chats, per_chat, time.perf_counter() - start


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def baseline(config: MySQLConfig, requests: list[tuple[str, dict[str, Any]]]) -> list[float]:
    conn = connect(config, config.database)
    samples = []
    with conn.cursor() as cur:
        for chat, bounds in requests:
            plan = plan_page(bounds.get("before_seq"), None, LIMIT)
            began = time.perf_counter()
            cur.execute(page_sql(plan), page_args(chat, plan, 1))
            cur.fetchall()
            conn.commit()
            samples.append(time.perf_counter() - began)
    conn.close()
    return samples


async def measure(env: dict[str, str], nats_url: str, cached: list[tuple[str, dict[str, Any]]],
                  older: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    hits = metrics.CACHE_LOOKUPS.labels(cache="history", result="hit")
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(app.main, load(env))
        async with open_bus(nats_url, name="bench-history") as bus:
            async def timed(requests: list[tuple[str, dict[str, Any]]]) -> list[float]:
                samples = []
                for chat, bounds in requests:
                    began = time.perf_counter()
                    answer = await rpc.call(bus, "im.history.page", {"chat_id": chat, "user_id": "u2",
                                                                     "limit": LIMIT, **bounds}, timeout=10)
                    samples.append(time.perf_counter() - began)
                    assert answer["events"]
                return samples
            await timed([(chat, {}) for chat in dict.fromkeys(c for c, _ in cached)])  # warm up
            before = hits._value.get()
            results = {"cached": await timed(cached)}
            results["cache hits"] = hits._value.get() - before
            before = hits._value.get()
            results["mysql"] = await timed(older)
            results["mysql cache hits"] = hits._value.get() - before
        runtime.stopping.set()
    return results


def run(rows: int) -> tuple[str, dict[str, Any]]:
    tag = secrets.token_hex(4)
    config = mysql_config(f"nj_bench_history_{tag}")
    prefix = f"njbench:{tag}:"
    store = Path(tempfile.mkdtemp(prefix="nj-bench-history-"))
    server = start_nats(store)
    try:
        migrate(config, "history", MIGRATIONS)
        chats, per_chat, load_s = load_rows(config, rows)
        rng = random.Random(7)
        hot = chats[:HOT_CHATS]
        cached: list[tuple[str, dict[str, Any]]] = [(rng.choice(hot), {}) for _ in range(REQUESTS)]
        top_old = max(per_chat - 250, LIMIT + 2)  # below the 200 cached events
        older = [(rng.choice(chats), {"before_seq": rng.randint(LIMIT + 1, top_old)})
                 for _ in range(REQUESTS)]
        env = {"NJ_NATS_URL": server.url, "NJ_MYSQL_HOST": config.host, "NJ_MYSQL_PORT": str(config.port),
               "NJ_MYSQL_USER": config.user, "NJ_MYSQL_PASSWORD": config.password,
               "NJ_MYSQL_DATABASE": config.database, "NJ_REDIS_PREFIX": prefix,
               "NJ_HISTORY_HTTP_PORT": "0", "NJ_LOG_LEVEL": "warning",
               "NJ_REDIS_URL": os.environ.get("NJ_REDIS_URL", "redis://127.0.0.1:6379/0")}
        results = trio.run(measure, env, server.url, cached, older)
        results["baseline cached"] = baseline(config, cached)
        results["baseline mysql"] = baseline(config, older)
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
        _cleanup(config, prefix)
    info = {"rows": per_chat * CHATS, "per_chat": per_chat, "load_s": load_s}
    return table(results, info), info


def _cleanup(config: MySQLConfig, prefix: str) -> None:
    conn = connect(config)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{config.database}`")
    conn.close()
    client = redis.Redis.from_url(os.environ.get("NJ_REDIS_URL", "redis://127.0.0.1:6379/0"))
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


def table(results: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [f"{info['rows']:,} events in {CHATS:,} chats ({info['per_chat']:,} each), loaded in "
             f"{info['load_s']:.0f} s; {REQUESTS:,} sequential requests per row, limit {LIMIT}.",
             "", "| im.history.page | p50 (ms) | p99 (ms) | raw SELECT p50 / p99 (ms) | p50 / p99 ratio | goal p99 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, key, goal in (("(a) cached: newest page of hot chats", "cached", 10),
                            ("(b) MySQL: random older pages", "mysql", 50)):
        p50, p99 = percentiles(results[key])
        b50, b99 = percentiles(results[f"baseline {key}"])
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} | {b50:.2f} / {b99:.2f} | "
                     f"{p50 / b50:.1f} / {p99 / b99:.1f} | < {goal} ms {'✓' if p99 < goal else '✗'} |")
    lines.append("")
    lines.append(f"Cache hits counted: {results['cache hits']:.0f} of {REQUESTS:,} in (a), "
                 f"{results['mysql cache hits']:.0f} in (b).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages to load (10000000: the 10 M load)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows (smoke test)")
    parser.add_argument("--write", metavar="FILE", help="replace the history section of this Markdown file")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    text, _ = run(rows)
    print(text)
    if args.write:
        _write_section(Path(args.write), text, args)


def _write_section(path: Path, text: str, args: argparse.Namespace) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    flags = " --quick" if args.quick else ("" if args.rows == 1_000_000 else f" --rows {args.rows}")
    section = (f"<!-- history:start -->\nCommand: `python -m bench.history{flags} --write BENCHMARKS.md`, "
               f"{datetime.date.today()}, commit {commit or 'uncommitted'} (with uncommitted history changes).\n\n"
               f"{text}\n<!-- history:end -->")
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if "<!-- history:start -->" in old and "<!-- history:end -->" in old:
        head, _, rest = old.partition("<!-- history:start -->")
        _, _, tail = rest.partition("<!-- history:end -->")
        path.write_text(head + section + tail)
    else:
        path.write_text(old.rstrip("\n") + "\n\n## History\n\n" + section + "\n")


if __name__ == "__main__":
    main()
