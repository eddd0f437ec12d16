"""Our own nats-server that fault tests may kill -9 and start again on the same port and store.

``libs.natsd.start_nats`` picks the ports once; this keeps them (and the JetStream store
directory) so the restarted server is the same server to the services: same URL, same
streams and consumers, recovered from disk.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from libs.natsd import NatsServer, free_port, start_nats


class RestartableNats:
    """``RestartableNats().start()``; ``kill()`` (-9, by pid) and ``start()`` again."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nj-fault-nats-"))
        self.port, self.monitor_port = free_port(), free_port()
        self.server: NatsServer | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def start(self, wait: float = 20.0) -> RestartableNats:
        self.server = start_nats(self.dir, port=self.port, monitor_port=self.monitor_port,
                                 log_file=self.dir / "nats.log", wait=wait)
        return self

    def kill(self) -> None:
        if self.server is not None:
            self.server.stop(kill=True)
        self.server = None

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RestartableNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
