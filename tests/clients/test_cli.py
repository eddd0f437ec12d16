"""The natterjack command line client end to end: its main() in this process, and `tail`
as a process of its own while another user sends."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from natterjack_client.cli import main

from tools.stack import Stack

from .conftest import PASSWORD, client_stack, unique

pytestmark = pytest.mark.e2e
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def stack(common_env) -> Iterator[Stack]:
    with client_stack(common_env) as running:
        yield running


@pytest.fixture
def cli(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Run:
    """``cli(home, *args)``: exit code, stdout, stderr of one command run as user ``home``."""
    monkeypatch.setenv("NJ_API", stack.api)

    def run(home: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / home))
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def ok_json(result: tuple[int, str, str]) -> dict:
    code, out, err = result
    assert code == 0, err
    return dict(json.loads(out))


def test_register_login_chat_send_tail_history_status(cli: Run, tmp_path: Path, stack: Stack):
    names = {home: unique(home) for home in ("ann", "bob")}
    ids = {home: ok_json(cli(home, "--json", "register", name, "--password", PASSWORD))["user_id"]
           for home, name in names.items()}
    for home, name in names.items():
        assert cli(home, "login", name, "--password", PASSWORD)[0] == 0
    stored = tmp_path / "ann" / "natterjack" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    chat = ok_json(cli("ann", "--json", "chat", "create", "--direct", ids["bob"]))["chat_id"]
    tail = _tail(tmp_path / "bob", stack.api, chat)
    ack = ok_json(cli("ann", "--json", "send", chat, "hello from the cli"))
    lines = [json.loads(line) for line in tail.communicate(timeout=30)[0].splitlines()]
    assert tail.returncode == 0
    assert lines[-1]["type"] == "new_message" and lines[-1]["content"] == "hello from the cli"
    page = ok_json(cli("bob", "--json", "history", chat, "--after", "0"))
    assert [e["seq"] for e in page["events"]][-1] == ack["seq"]
    assert _delivered_to_bob(cli, ack["message_id"], ids["bob"])
    code, out, _ = cli("ann", "status", ack["message_id"])
    assert code == 0 and ids["bob"] in out


def _tail(home: Path, api: str, chat: str) -> subprocess.Popen[str]:
    """`natterjack tail` until the chat's creation event and one message were printed."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "NJ_API": api}
    return subprocess.Popen([sys.executable, "-m", "natterjack_client.cli", "--json", "tail", chat,
                             "--count", "2"], env=env, stdout=subprocess.PIPE, text=True)


def _delivered_to_bob(cli: Run, message_id: str, bob_id: str) -> bool:
    """`tail` acked what it printed: the status API says so (shortly after)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = ok_json(cli("ann", "--json", "status", message_id))
        if any(r["user_id"] == bob_id and r["status"] in ("delivered", "read") for r in status["recipients"]):
            return True
        time.sleep(0.1)
    return False


def test_types_and_readable_output(cli: Run):
    name = unique("cli")
    cli("cy", "register", name, "--password", PASSWORD)
    cli("cy", "login", name, "--password", PASSWORD)
    type_name = unique("vote")
    code, out, _ = cli("cy", "types", "register", type_name, '{"type": "object"}')
    assert code == 0 and f"registered {type_name} version 1" in out
    code, out, _ = cli("cy", "types", "list")
    assert code == 0 and type_name in out and "text" in out
    code, out, _ = cli("cy", "whoami")
    assert code == 0 and name in out


def test_errors_are_one_line_with_documented_exit_codes(cli: Run):
    code, _, err = cli("nobody", "chats")
    assert (code, err.count("\n")) == (3, 1) and "not logged in" in err
    assert cli("nobody", "no-such-command")[0] == 1
    assert cli("nobody", "--api", "http://127.0.0.1:1", "register", "x", "--password", "y")[0] == 4
    name = unique("dee")
    cli("dee", "register", name, "--password", PASSWORD)
    code, _, err = cli("dee", "register", name, "--password", PASSWORD)
    assert (code, err.count("\n")) == (2, 1) and "code 4009" in err
    cli("dee", "login", name, "--password", PASSWORD)
    code, _, err = cli("dee", "send", "no_such_chat", "hi")
    assert code == 2 and "code 4001" in err
    assert cli("dee", "logout")[0] == 0
    assert cli("dee", "chats")[0] == 3
