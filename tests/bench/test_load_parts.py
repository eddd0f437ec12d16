"""The load tool's parts that decide verdicts: step figures, profile summaries, the relay."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from bench.load import accounts, idle, relay, steps, tables
from bench.load.people import device_of
from bench.load.procs import Profile, short
from tests.checker import Device

pytestmark = pytest.mark.timeout(30)


def answer(latencies: list[float], arrived: int, sent: int, **extra: int) -> dict:
    return {"latencies_ms": latencies, "first_ms": [], "arrived": arrived, "sent": sent,
            "refused": 0, "missing": 0, "unanswered": 0, "codes": {}, "window_s": 10.0,
            "client_cpu_s": 0.5, **extra}


def test_a_step_holds_only_fast_complete_and_at_rate() -> None:
    fast = steps.merge([answer([1.0] * 99 + [40.0], 500, 500)], 50, 10, {"gateway": 2.0})
    assert fast["held"] and fast["achieved"] == 50 and fast["cpu_ms_per_msg"] == 4.0
    slow = steps.merge([answer([1.0] * 90 + [60.0] * 10, 500, 500)], 50, 10, {})
    lossy = steps.merge([answer([1.0], 499, 500, missing=1)], 50, 10, {})
    assert not slow["held"] and not lossy["held"] and steps.breaks(lossy)
    assert steps.sustained([fast, {**slow, "offered": 100}]) == 50


def test_two_workers_add_up() -> None:
    step = steps.merge([answer([5.0], 100, 100, refused=2), answer([7.0], 100, 101,
                                                                  unanswered=1)], 20, 10, {})
    assert (step["sent"], step["refused"], step["missing"], step["arrived"]) == (201, 2, 1, 200)


def test_profile_summary_counts_own_and_project_time(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text("main (services/router/__main__.py:3);send (services/router/handlers.py:9);"
                   "dumps (json/__init__.py:231) 3\n"
                   "main (services/router/__main__.py:3);poll (trio/_core/_io_epoll.py:243) 1\n")
    profile = Profile.__new__(Profile)
    profile.out, profile.process = raw, None
    top = profile.top()
    assert profile.samples() == 4
    assert top["own"][0] == ("dumps (json/__init__.py:231)", 0.75)
    assert ("send (router/handlers.py)", 0.75) in top["project"]
    assert short("f (/a/b/c/d.py:1)", line=False) == "f (c/d.py)"


def test_a_token_names_its_device() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "u1", "did": "d1"}).encode()).decode()
    assert device_of(f"h.{claims.rstrip('=')}.s") == Device("u1", "d1")


async def test_the_relay_forwards_to_the_named_client_only() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(relay.serve, 0)
        base = f"ws://127.0.0.1:{port}/ws"
        async with open_websocket_url(f"{base}?token=a") as a, \
                open_websocket_url(f"{base}?token=b") as b:
            await a.send_message('{"chat_id": "nobody", "content": "1"}')
            await a.send_message("not json")
            await a.send_message('{"chat_id": "b", "content": "2"}')
            with trio.fail_after(5):
                assert json.loads(await b.get_message()) == {"chat_id": "b", "content": "2"}
        nursery.cancel_scope.cancel()


def test_idle_sockets_are_dealt_evenly_over_gateways_and_client_processes() -> None:
    servers = {"gw1": "ws://127.0.0.1:1/ws", "gw2": "ws://127.0.0.1:2/ws"}
    urls = idle.spread(servers, [f"t{i}" for i in range(5)])
    assert urls[:3] == ["ws://127.0.0.1:1/ws?token=t0", "ws://127.0.0.1:2/ws?token=t1",
                        "ws://127.0.0.1:1/ws?token=t2"]
    # one client process per 8,000 sockets at least: each stays well below 20,000 files
    assert [idle.workers_for(n, 2) for n in (20, 16_000, 19_000, 50_000)] == [2, 2, 3, 7]
    assert [accounts.workers_for(n) for n in (10, 5000, 19_000, 50_000)] == [1, 2, 4, 4]


def spread_result(kib: list[float]) -> dict:
    servers = {f"idle-gw{i + 1}": {"opened": 100, "rss_before_kib": 60_000,
                                   "rss_after_kib": 60_000 + k * 100, "kib_per_connection": k,
                                   "open_files": 130} for i, k in enumerate(kib)}
    return {"wanted": 300, "opened": 300, "workers": 2, "failed": 0, "servers": servers,
            "connects_per_s": 1200.0, "gateways": len(kib),
            **max(servers.values(), key=lambda s: s["kib_per_connection"])}


def test_spread_rows_judge_the_worst_gateway_and_say_when_the_relay_cannot_compare() -> None:
    product = {"idle_spread": spread_result([20.0, 30.0, 10.0])}
    rows = tables.spread_rows(product, {})
    assert rows[0][0] == "2b idle, 3 gateways" and rows[0][3].startswith("– (over one process")
    assert rows[1][2] == "30.0" and rows[1][-1] == "✗"
    assert rows[2][2] == "1,200" and rows[2][-1] == "✓"
    relay = {"idle_spread": {"opened": 300, "kib_per_connection": 15.0, "connects_per_s": 2400.0}}
    assert tables.spread_rows(product, relay)[1][4] == "2.00"
    assert "idle-gw2 100 sockets held" in tables.idle_detail(product)
