"""The load tool end to end in seconds, so it cannot rot: relay and product, 10 clients,
one rate step, idle sockets on one gateway and on two, and a reconnect round, the history check on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load.__main__ import main

pytestmark = pytest.mark.timeout(180)  # a shared 2-core machine: minutes under load


def test_smoke_run_writes_its_results_and_passes_the_history_check(tmp_path: Path) -> None:
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")
    assert main(["--smoke", "--out", str(tmp_path), "--write", str(benchmarks)]) == 0
    result = json.loads((tmp_path / "load.json").read_text())
    product, relay = result["product"], result["relay"]
    assert product["check"]["ok"], product["check"]["summary"]
    assert [s["missing"] for s in product["steps"] + relay["steps"]] == [0, 0]
    assert product["steps"][0]["arrived"] == product["steps"][0]["sent"] > 0
    assert product["reconnect"]["missing"] == 0
    assert product["idle"]["opened"] == relay["idle"]["opened"] == 20
    spread = product["idle_spread"]
    assert spread["opened"] == relay["idle_spread"]["opened"] == 30
    assert [s["opened"] for s in spread["servers"].values()] == [15, 15]
    assert (tmp_path / "load.png").read_bytes().startswith(b"\x89PNG")
    section = benchmarks.read_text()
    assert "<!-- load:start -->" in section and "| 1 durable 1:1 |" in section
    assert "| 2b idle, 2 gateways |" in section
