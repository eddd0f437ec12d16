"""Logs as a service writes them: JSON lines on stdout by default, or a file rotated by size
(NJ_LOG_FILE, NJ_LOG_MAX_BYTES, NJ_LOG_BACKUPS); an error carries the service, the trace id
that came with the request, and the exception."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]

# A process set up like a service (config from the environment, then logging) answering a
# request whose handler fails, called `NJ_PROBE_CALLS` times with trace ids trace0000...
PROBE = textwrap.dedent("""
    import os
    import trio
    from libs import log, rpc
    from libs.bus import open_bus
    from libs.config import CommonConfig, EnvReader
    from libs.errors import NatterjackError

    config = CommonConfig.read(EnvReader(), "probe", 0)
    log.setup_from(config)

    async def fail(payload):
        raise RuntimeError("broken on purpose " + payload["pad"])

    async def main():
        async with open_bus(config.nats_url, name="probe") as bus, trio.open_nursery() as n:
            await n.start(rpc.serve_rpc, bus, "im.probe.fail", "probe", fail)
            for i in range(int(os.environ["NJ_PROBE_CALLS"])):
                log.bind_trace(f"trace{i:04d}")
                try:
                    await rpc.call(bus, "im.probe.fail", {"pad": "x" * 100}, timeout=5)
                except NatterjackError:
                    pass
            n.cancel_scope.cancel()

    trio.run(main)
""")


def run_probe(nats_url: str, calls: int, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "NJ_NATS_URL": nats_url,
                                           "NJ_PROBE_CALLS": str(calls), **env})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def assert_error_has_context(lines: list[dict[str, Any]], trace_id: str) -> None:
    errors = [line for line in lines if line["level"] == "error" and line.get("trace_id") == trace_id]
    assert errors, f"no error line with trace id {trace_id}"
    error = errors[0]
    assert error["service"] == "probe" and error["event"] == "rpc.handler_failed"
    assert "RuntimeError: broken on purpose" in error["exception"]
    assert error["timestamp"].endswith("Z")


def test_json_lines_on_stdout_by_default(nats_server):
    lines = json_lines(run_probe(nats_server.url, 2))
    assert_error_has_context(lines, "trace0001")


def test_log_file_rotates_by_size_and_keeps_the_backups(nats_server, tmp_path: Path):
    log_file = tmp_path / "probe.log"
    out = run_probe(nats_server.url, 40, NJ_LOG_FILE=str(log_file), NJ_LOG_MAX_BYTES="4096",
                    NJ_LOG_BACKUPS="2")
    assert out == ""  # everything went to the file
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["probe.log", "probe.log.1", "probe.log.2"]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 4096 + 2048  # one line may finish past the limit
    newest = json_lines(log_file.read_text())
    assert_error_has_context(newest, "trace0039")
