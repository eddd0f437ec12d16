"""The parts of tools/devstack.py that need no running stack: the environment file, pid
files, the command-line check that keeps ``down`` from signalling a recycled pid."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.config import CommonConfig, EnvReader
from libs.natsd import free_port
from tools import devstack
from tools.devstack import Expect, Layout, StackError


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    layout.make_dirs()
    return layout


def exited_pid() -> int:
    """A pid that belonged to a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---- environment ----------------------------------------------------------------------

def test_stack_env_defaults(layout: Layout) -> None:
    env = devstack.stack_env(layout, {}, {})
    assert env["NJ_REDIS_PREFIX"] == "nj:"
    assert env["NJ_MYSQL_DATABASE"] == "natterjack"
    assert env["NJ_NATS_URL"] == "nats://127.0.0.1:4322"
    assert env["NJ_AUTH_SIGNING_KEY_FILE"] == str(layout.signing_key)
    assert env["NJ_GATEWAY_PUBLIC_WS_URL"] == "ws://127.0.0.1:8081/ws"
    ports = {var: env[var] for var in env if var.endswith("_PORT") and "MYSQL" not in var}
    assert ports == {"NJ_GATEWAY_HTTP_PORT": "8080", "NJ_GATEWAY_WS_PORT": "8081",
                     "NJ_AUTH_HTTP_PORT": "8091", "NJ_ROUTER_HTTP_PORT": "8092",
                     "NJ_HISTORY_HTTP_PORT": "8093", "NJ_DELIVERY_RETRY_HTTP_PORT": "8094"}


def test_operator_variables_override_defaults_and_started_ones_override_both(
        layout: Layout) -> None:
    environ = {"NJ_MYSQL_HOST": "db.internal", "NJ_GATEWAY_WS_PORT": "9001",
               "NJ_LOG_LEVEL": "debug", "NJ_REDIS_URL": "redis://elsewhere:6379/1",
               "NJ_LOG_FILE": "/somewhere.log", "NJ_TEST_MYSQL_PORT": "1",
               "NJ_DEVSTACK_ALLOW_MISSING": "1", "NJ_NATS_PORT": "4400", "HOME": "/home/dev"}
    env = devstack.stack_env(layout, environ, {"NJ_REDIS_URL": "redis://127.0.0.1:6380/0"})
    assert env["NJ_MYSQL_HOST"] == "db.internal"
    assert env["NJ_LOG_LEVEL"] == "debug"
    assert env["NJ_REDIS_URL"] == "redis://127.0.0.1:6380/0"
    assert env["NJ_GATEWAY_PUBLIC_WS_URL"] == "ws://127.0.0.1:9001/ws"
    for not_passed in ("NJ_LOG_FILE", "NJ_TEST_MYSQL_PORT", "NJ_DEVSTACK_ALLOW_MISSING",
                       "NJ_NATS_PORT", "HOME"):
        assert not_passed not in env


def test_an_explicit_public_ws_url_is_kept(layout: Layout) -> None:
    environ = {"NJ_GATEWAY_PUBLIC_WS_URL": "wss://chat.example.com/ws"}
    assert devstack.stack_env(layout, environ, {})["NJ_GATEWAY_PUBLIC_WS_URL"] == \
        "wss://chat.example.com/ws"


def test_env_file_round_trips_awkward_values(layout: Layout) -> None:
    env = devstack.stack_env(layout, {"NJ_MYSQL_PASSWORD": "p a's$`\"x#=y"}, {})
    text = devstack.render_env(env)
    assert text.startswith("#")
    assert devstack.parse_env(text) == env
    assert "NJ_MYSQL_PASSWORD=''\n" in devstack.render_env({"NJ_MYSQL_PASSWORD": ""})


def test_env_file_is_what_a_shell_sees(layout: Layout) -> None:
    env = devstack.stack_env(layout, {"NJ_MYSQL_PASSWORD": "p a's$`x"}, {})
    layout.stack_env.write_text(devstack.render_env(env))
    shell = subprocess.run(["bash", "-c", 'set -a; . "$0"; printf %s "$NJ_MYSQL_PASSWORD"',
                            str(layout.stack_env)], capture_output=True, text=True, check=True,
                           env={"PATH": os.environ.get("PATH", "")})
    assert shell.stdout == "p a's$`x"


def test_the_services_accept_the_stack_env(layout: Layout) -> None:
    env = devstack.stack_env(layout, {}, {})
    for svc in devstack.SERVICES:
        reader = EnvReader(env)
        config = CommonConfig.read(reader, svc.name, 1)
        reader.check()
        assert config.http_port == int(env[svc.port_var])


def test_bad_ports_are_refused() -> None:
    with pytest.raises(StackError) as caught:
        devstack.port_of({"NJ_AUTH_HTTP_PORT": "0"}, "NJ_AUTH_HTTP_PORT")
    assert "NJ_AUTH_HTTP_PORT" in str(caught.value)
    with pytest.raises(StackError):
        devstack.port_of({"NJ_AUTH_HTTP_PORT": "http"}, "NJ_AUTH_HTTP_PORT")
    assert devstack.port_of({"X": "8091"}, "X") == 8091


def test_mysql_target_reads_the_operator_settings() -> None:
    target = devstack.mysql_target({"NJ_MYSQL_PORT": "3399", "NJ_MYSQL_PASSWORD": "pw"})
    assert target == devstack.MySQLTarget("127.0.0.1", 3399, "root", "pw")
    assert devstack.PRIVATE_MYSQL.env()["NJ_MYSQL_PORT"] == "3307"


# ---- pid files and processes ----------------------------------------------------------

def test_pid_file_round_trip(layout: Layout) -> None:
    path = layout.pid_file("auth")
    devstack.write_pid(path, 4242)
    assert path.read_text() == "4242\n"
    assert devstack.read_pid(path) == 4242
    assert [p.name for p in layout.run.iterdir()] == ["auth.pid"]


@pytest.mark.parametrize("content", ["", "garbage", "-5", "0", "12 13"])
def test_invalid_pid_files_read_as_none(layout: Layout, content: str) -> None:
    path = layout.pid_file("auth")
    path.write_text(content)
    assert devstack.read_pid(path) is None
    assert devstack.read_pid(layout.pid_file("missing")) is None


def test_own_process_is_alive_and_its_cmdline_is_read() -> None:
    assert devstack.is_alive(os.getpid())
    argv = devstack.read_cmdline(os.getpid())
    assert argv and "python" in os.path.basename(argv[0])


def test_an_exited_pid_is_not_alive() -> None:
    pid = exited_pid()
    assert not devstack.is_alive(pid)
    assert devstack.read_cmdline(pid) == []


def test_a_zombie_is_not_alive() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while not devstack._is_zombie(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert devstack._is_zombie(process.pid)
        assert not devstack.is_alive(process.pid)
    finally:
        process.wait()


@pytest.mark.parametrize(("argv", "ours"), [
    ([".venv/bin/python", "-m", "services.auth"], True),
    (["/usr/bin/python3.11", "-m", "services.auth"], True),
    ([".venv/bin/python", "-m", "services.router"], False),
    (["/usr/bin/vim", "-m", "services.auth"], False),
    (["python", "services.auth"], False),
    ([], False),
])
def test_expect_service(argv: list[str], ours: bool) -> None:
    assert Expect(("python",), ("-m", "services.auth")).matches(argv) is ours


def test_expect_rewritten_titles_and_paths(layout: Layout) -> None:
    expect = devstack.expectations(layout)
    assert expect["redis"].matches(["/usr/bin/redis-server 127.0.0.1:6380"])
    assert not expect["redis"].matches(["/usr/bin/redis-server 127.0.0.1:6379"])
    conf = str(layout.nats_conf)
    assert expect["nats"].matches(["/x/.venv/bin/nats-server", "-c", conf])
    assert not expect["nats"].matches(["/usr/sbin/nats-server", "-c", "/etc/nats.conf"])
    assert expect["mysql"].matches(["/usr/sbin/mariadbd", "--no-defaults",
                                    f"--datadir={layout.mysql}"])
    assert not expect["mysql"].matches(["/usr/sbin/mariadbd"])


def test_every_pid_file_name_has_an_expectation(layout: Layout) -> None:
    assert set(devstack.stop_order()) == set(devstack.expectations(layout))
    assert devstack.stop_order()[0] == "gateway"
    assert devstack.stop_order()[-3:] == ["nats", "redis", "mysql"]


def test_live_pid_checks_liveness_and_identity(layout: Layout) -> None:
    path = layout.pid_file("auth")
    devstack.write_pid(path, os.getpid())
    me = devstack.read_cmdline(os.getpid())
    assert devstack.live_pid(path, Expect(("python",), tuple(me[1:2]))) == os.getpid()
    assert devstack.live_pid(path, Expect(("python",), ("-m", "services.auth"))) is None
    devstack.write_pid(path, exited_pid())
    assert devstack.live_pid(path, Expect(("python",))) is None


def test_stop_leaves_a_recycled_pid_alone(layout: Layout) -> None:
    """Our own pid stands in for a pid reused by some other program."""
    path = layout.pid_file("auth")
    devstack.write_pid(path, os.getpid())
    outcome = devstack.stop_pid_file(path, Expect(("python",), ("-m", "services.auth")))
    assert "left alone" in outcome
    assert not path.exists()


def test_stop_of_an_exited_process_removes_the_pid_file(layout: Layout) -> None:
    path = layout.pid_file("nats")
    devstack.write_pid(path, exited_pid())
    assert "not running" in devstack.stop_pid_file(path, Expect(("nats-server",)))
    assert not path.exists()
    path.write_text("garbage")
    assert "no valid pid" in devstack.stop_pid_file(path, Expect(("nats-server",)))
    assert not path.exists()


def test_stop_terminates_a_matching_process(layout: Layout) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "natterjack-stop-test"])
    try:
        path = layout.pid_file("auth")
        devstack.write_pid(path, process.pid)
        expect = Expect(("python",), ("natterjack-stop-test",))
        assert devstack.live_pid(path, expect) == process.pid
        assert devstack.stop_pid_file(path, expect, timeout=5) == f"stopped (pid {process.pid})"
        assert not devstack.is_alive(process.pid)
        assert not path.exists()
    finally:
        process.kill()
        process.wait()


def test_down_stops_in_order_and_leaves_unknown_pid_files(layout: Layout, capsys) -> None:
    devstack.write_pid(layout.pid_file("nats"), exited_pid())
    devstack.write_pid(layout.pid_file("gateway"), exited_pid())
    devstack.write_pid(layout.pid_file("something-else"), os.getpid())
    assert devstack.cmd_down(layout) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("gateway: not running")
    assert lines[1].startswith("nats: not running")
    assert "unknown pid file" in lines[2] and "left alone" in lines[2]
    assert [p.name for p in layout.run.iterdir()] == ["something-else.pid"]


# ---- keys, services, files ------------------------------------------------------------

def test_signing_key_is_created_once_with_mode_600(layout: Layout) -> None:
    key = layout.signing_key
    assert devstack.ensure_signing_key(key)
    pem = key.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(layout.keys.stat().st_mode) == 0o700
    assert not devstack.ensure_signing_key(key)
    assert key.read_text() == pem


def make_service(root: Path, package: str) -> None:
    (root / "services" / package).mkdir(parents=True, exist_ok=True)
    (root / "services" / package / "__main__.py").write_text("")


def test_all_five_services_are_required_by_default(tmp_path: Path) -> None:
    make_service(tmp_path, "router")
    with pytest.raises(StackError) as caught:
        devstack.present_services(tmp_path, {})
    assert caught.value.exit_code == devstack.EXIT_MISSING
    assert "services/auth" in str(caught.value) and "services/router" not in str(caught.value)
    assert devstack.ALLOW_MISSING_VAR in str(caught.value)


def test_missing_services_are_skipped_only_when_allowed(tmp_path: Path, capsys) -> None:
    make_service(tmp_path, "router")
    present = devstack.present_services(tmp_path, {devstack.ALLOW_MISSING_VAR: "1"})
    assert [svc.name for svc in present] == ["router"]
    assert "WARNING: services/auth does not exist yet" in capsys.readouterr().out
    for svc in devstack.SERVICES:
        make_service(tmp_path, svc.package)
    assert [svc.package for svc in devstack.present_services(tmp_path, {})] == \
        ["auth", "router", "history", "delivery_retry", "gateway"]


def test_nats_port_is_read_back_from_its_config(layout: Layout) -> None:
    assert devstack.configured_nats_port(layout) is None
    layout.nats_conf.write_text("listen: 127.0.0.1:4399\nhttp: 127.0.0.1:8322\n")
    assert devstack.configured_nats_port(layout) == 4399


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert devstack.tail(path, 3) == ["line 97", "line 98", "line 99"]
    assert devstack.tail(tmp_path / "missing.log") == []


def test_status_without_a_stack_reports_not_started(layout: Layout, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "mysql_problem", lambda target: None)
    monkeypatch.setattr(devstack, "redis_problem", lambda url: "connection refused")
    assert devstack.cmd_status(layout) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["mysql", "external", "127.0.0.1:3306:", "reachable"]
    assert out[1].split()[:3] == ["redis", "external", "redis://127.0.0.1:6379/0:"]
    assert out[2].split() == ["nats", "not", "started"]


# ---- readiness ------------------------------------------------------------------------

class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_wait_ready_reports_who_is_not_ready(layout: Layout, ready_server: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "expectations",
                        lambda _: {svc.name: Expect(("python",)) for svc in devstack.SERVICES})
    auth, router, history = devstack.SERVICES[:3]
    for svc in (auth, router):
        devstack.write_pid(layout.pid_file(svc.name), os.getpid())
    devstack.write_pid(layout.pid_file(history.name), exited_pid())
    env = {auth.port_var: str(ready_server), router.port_var: str(free_port()),
           history.port_var: str(free_port())}
    started = time.monotonic()
    not_ready = devstack.wait_ready(layout, [auth, router, history], env, timeout=1.5)
    assert time.monotonic() - started < 5
    assert set(not_ready) == {"router", "history"}
    assert not_ready["router"].startswith("not ready")
    assert not_ready["history"] == "the process has exited"


def test_http_get_answers_and_failures(ready_server: int) -> None:
    assert devstack.http_get(f"http://127.0.0.1:{ready_server}/ready") == \
        (200, '{"status":"ok"}')
    assert devstack.http_get(f"http://127.0.0.1:{ready_server}/other")[0] == 404
    assert devstack.http_get(f"http://127.0.0.1:{free_port()}/ready")[0] is None
