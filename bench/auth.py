"""auth benchmark: access-token verification cost and login throughput.

    python -m bench.auth [--quick] [--write BENCHMARKS.md]

(a) ``libs.tokens.Verifier.verify`` on a real token (what every WebSocket handshake
pays), against a baseline of only decoding the JWT header, in the same run.
(b) Logins per second with 8 concurrent callers against a real auth service started in
this process, with its own nats-server, a throwaway MySQL database (dropped after) and a
unique Redis key prefix (deleted after), at the default argon2id parameters and at the
test parameters. MySQL and Redis come from NJ_MYSQL_* / NJ_REDIS_URL (defaults: local).
"""

from __future__ import annotations

import argparse
import functools
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
import pymysql
import redis
import trio

from libs import log, rpc, tokens
from libs.bus import open_bus
from libs.config import EnvReader, MySQLConfig
from libs.natsd import start_nats
from services.auth import app
from services.auth.config import load

from . import report

CONCURRENCY = 8
PASSWORD = "correct horse battery staple"
ARGON2 = {"default (t=3, 64 MiB, p=1)": ("3", "65536", "1"),
          "test (t=1, 8 KiB, p=1)": ("1", "8", "1")}


# ---- (a) token verification -----------------------------------------------------------------
def verification(iterations: int) -> dict[str, float]:
    private_pem = tokens.generate_private_key_pem()
    now = int(time.time())
    token = tokens.sign(private_pem, "k1", tokens.Claims("U" * 26, "phone", "S" * 26, now + 900),
                        now)
    verifier = tokens.Verifier({"k1": tokens.public_pem(private_pem)})
    header = _per_call_us(lambda: jwt.get_unverified_header(token), iterations)
    verify = _per_call_us(lambda: verifier.verify(token), iterations)
    return {"header": header, "verify": verify}


def _per_call_us(fn: Any, iterations: int) -> float:
    for _ in range(min(iterations, 200)):  # warm up
        fn()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations * 1e6


# ---- (b) login throughput ---------------------------------------------------------------------
async def login_rate(env: dict[str, str], nats_url: str, per_worker: int) -> float:
    config = load(env)
    async with trio.open_nursery() as nursery:
        runtime = await nursery.start(functools.partial(app.main, config, handle_signals=False))
        async with open_bus(nats_url, name="bench-auth") as bus:
            tag = secrets.token_hex(3)
            names = [f"bench_{tag}_{i}" for i in range(CONCURRENCY)]
            for name in names:  # one user per caller: one user's parallel logins would be limited
                await rpc.call(bus, "im.auth.register", {"username": name, "password": PASSWORD},
                               timeout=60)

            async def worker(name: str, count: int) -> None:
                for _ in range(count):
                    await rpc.call(bus, "im.auth.login", {"username": name, "password": PASSWORD,
                                                          "device_id": "bench"}, timeout=60)
            await worker(names[0], 1)  # warm up (first connections, first hash)
            start = time.perf_counter()
            async with trio.open_nursery() as callers:
                for name in names:
                    callers.start_soon(worker, name, per_worker)
            elapsed = time.perf_counter() - start
        runtime.stopping.set()
    return CONCURRENCY * per_worker / elapsed


def logins(quick: bool) -> dict[str, float]:
    env_reader = EnvReader()
    mysql = MySQLConfig.read(env_reader)
    redis_url = env_reader.str("NJ_REDIS_URL", "redis://127.0.0.1:6379/0")
    run_id = secrets.token_hex(4)
    database, prefix = f"nj_bench_auth_{run_id}", f"njbench:{run_id}:"
    store = Path(tempfile.mkdtemp(prefix="nj-bench-auth-"))
    server = start_nats(store)
    results: dict[str, float] = {}
    try:
        for label, (time_cost, memory, lanes) in ARGON2.items():
            env = {"NJ_NATS_URL": server.url, "NJ_MYSQL_HOST": mysql.host,
                   "NJ_MYSQL_PORT": str(mysql.port), "NJ_MYSQL_USER": mysql.user,
                   "NJ_MYSQL_PASSWORD": mysql.password, "NJ_MYSQL_DATABASE": database,
                   "NJ_REDIS_URL": redis_url, "NJ_REDIS_PREFIX": prefix,
                   "NJ_AUTH_HTTP_PORT": "0", "NJ_LOG_LEVEL": "warning",
                   "NJ_AUTH_DEV_GENERATE_KEY": "true", "NJ_ARGON2_TIME_COST": time_cost,
                   "NJ_ARGON2_MEMORY_KIB": memory, "NJ_ARGON2_PARALLELISM": lanes}
            slow = time_cost != "1"
            per_worker = (3 if quick else 12) if slow else (25 if quick else 150)
            results[label] = trio.run(login_rate, env, server.url, per_worker)
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
        _drop(mysql, database)
        _clean_redis(redis_url, prefix)
    return results


def _drop(mysql: MySQLConfig, database: str) -> None:
    conn = pymysql.connect(host=mysql.host, port=mysql.port, user=mysql.user,
                           password=mysql.password, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    conn.close()


def _clean_redis(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


# ---- report ---------------------------------------------------------------------------------
def body(verify: dict[str, float], rates: dict[str, float], iterations: int) -> str:
    rows = [[f"JWT header decode only, baseline (µs/token, {iterations:,} runs)",
             f"{verify['header']:,.1f}"],
            [f"`Verifier.verify`, EdDSA full check (µs/token, {iterations:,} runs)",
             f"{verify['verify']:,.1f}"],
            ["verify / header-decode ratio", f"{verify['verify'] / verify['header']:.1f}"]]
    rows += [[f"logins/s, {CONCURRENCY} concurrent, argon2id {label}", f"{rate:,.1f}"]
             for label, rate in rates.items()]
    return report.table(["measure", "value"], rows) + NOTES


NOTES = """

How it is measured: (a) one token signed with a fresh Ed25519 key, verified 10,000 times
in a loop (signature, `exp`/`nbf`/`iss`/`aud`, required claims), against decoding only its
header; this is the CPU cost a gateway pays per WebSocket handshake before asking auth
whether the session is live. (b) auth runs in the benchmark's process with its own
nats-server, a throwaway MySQL database and Redis prefix; 8 callers, each logging in
its own user on one device (each login verifies the password with argon2id, opens a
session row, ends the device's previous one and signs a token). Argon2 hashes run at
most `NJ_ARGON2_MAX_CONCURRENCY` (= CPU count) at a time, so the default parameters make
login throughput about (cores / hash time)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument("--write", metavar="FILE", help="replace the auth section of this file")
    args = parser.parse_args()
    iterations = 10_000
    log.setup("bench", "warning", "")
    text = body(verification(iterations), logins(args.quick), iterations)
    print(text)
    if args.write:
        command = f"python -m bench.auth{' --quick' if args.quick else ''} --write BENCHMARKS.md"
        report.write_section(Path(args.write), "auth", command, text)


if __name__ == "__main__":
    main()
