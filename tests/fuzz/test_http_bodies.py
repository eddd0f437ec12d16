"""HTTP: every operation of proto/openapi.yaml on the gateway, with malformed input beyond
the schema: junk path parameters, junk query strings (cursors, limits, repeats, bad
escapes), bodies that are mutated valid bodies, any JSON, broken JSON, raw bytes or too
big, under wrong content types and with missing or foreign credentials.

Every answer is below 500; every error carries ``{"error": {"code", "message"}}`` with a
contract code that matches its HTTP status. Afterwards nothing partial is stored: the
users and chats in MySQL are exactly those the 201/200 answers announced, and the
seeded chat holds no event beyond what successful changes stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
import yaml
from hypothesis import given
from hypothesis import strategies as st

from libs import contracts
from libs.errors import HTTP_STATUS, INTERNAL
from tests.checker import wait_stored
from tests.e2e.client import PASSWORD, User, next_frame, register_and_login, send

from .conftest import CODES, EXAMPLES, assert_alive, assert_error_body, query
from .strategies import BROKEN_JSON, HOSTILE, JSON, ODD_TEXT, UNICODE, encode, mutated

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
OPENAPI = yaml.safe_load((contracts.proto_dir() / "openapi.yaml").read_text())
METHODS = ("get", "post", "patch", "put", "delete")
OPERATIONS = sorted((method.upper(), path) for path, item in OPENAPI["paths"].items()
                    for method in item if method in METHODS)
# 100 examples per group of operations: the auth ones, those that change chats, those that read.
GROUPS = {
    "auth": [op for op in OPERATIONS if op[1].startswith("/api/v1/auth/")],
    "changes": [op for op in OPERATIONS if not op[1].startswith("/api/v1/auth/") and op[0] != "GET"],
    "reads": [op for op in OPERATIONS if not op[1].startswith("/api/v1/auth/") and op[0] == "GET"],
}
ENDS_SESSION = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/auth/sessions/{device_id}")}
CHANGES_CHAT = {"PATCH", "POST", "DELETE"}  # on /chats/{chat_id}/...: may store one event each


def request_schema(method: str, path: str) -> dict[str, Any] | None:
    body = OPENAPI["paths"][path][method.lower()].get("requestBody")
    if not body:
        return None
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return contracts.load_json(ref.removeprefix("./"))  # type: ignore[no-any-return]


def query_names(method: str, path: str) -> list[str]:
    return [p["name"] for p in OPENAPI["paths"][path][method.lower()].get("parameters", [])
            if p.get("in") == "query"]


@dataclass
class World:
    api: str
    owner: User
    member: User
    chat_id: str
    message_id: str
    spare: User  # a device whose session the session-ending operations may end
    refresh_token: str
    created_users: set[str] = field(default_factory=set)
    tried_users: set[str] = field(default_factory=set)
    created_chats: set[str] = field(default_factory=set)
    chat_changes: int = 0  # 2xx answers to changes of the seeded chat

    def valid_bodies(self) -> dict[str, dict[str, Any]]:
        return {
            "/api/v1/auth/register": {"username": f"fzh{secrets.token_hex(3)}", "password": PASSWORD},
            "/api/v1/auth/login": {"username": self.owner.username, "password": PASSWORD,
                                   "device_id": "fz-login"},
            "/api/v1/auth/refresh": {"refresh_token": self.refresh_token},
            "/api/v1/chats": {"type": "group", "name": "fz", "members": [self.member.user_id]},
            "/api/v1/chats/{chat_id}": {"name": "renamed"},
            "/api/v1/chats/{chat_id}/owner": {"user_id": self.member.user_id},
            "/api/v1/chats/{chat_id}/members": {"user_id": self.member.user_id, "role": "admin"},
            "/api/v1/chats/{chat_id}/messages/{seq}": {"content": "edited"},
            "/api/v1/chats/{chat_id}/read": {"seq": 1},
            "/api/v1/message-types": {"name": "fz.type", "version": 1, "schema": {"type": "object"}},
        }

    def real_params(self) -> dict[str, list[Any]]:
        return {"chat_id": [self.chat_id], "user_id": [self.member.user_id, self.owner.user_id],
                "message_id": [self.message_id], "seq": [1, 2], "device_id": ["nodevice"]}


async def _seed(api: str) -> World:
    async with httpx.AsyncClient(base_url=api) as http:
        owner, member, spare = [await register_and_login(http, f"fzh_{n}_{secrets.token_hex(4)}")
                                for n in ("owner", "member", "spare")]
        chat = await http.post("/api/v1/chats", headers=owner.auth, json={
            "type": "group", "name": "fuzz", "members": [member.user_id]})
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()["chat_id"]
        login = await http.post("/api/v1/auth/login", json={
            "username": spare.username, "password": PASSWORD, "device_id": "fz-refresh"})
        async with trio.open_nursery() as nursery:
            from trio_websocket import connect_websocket_url
            ws = await connect_websocket_url(nursery, f"{owner.ws_url}?token={owner.access_token}")
            await send(ws, {"type": "send_message", "id": "seed", "chat_id": chat_id, "content": "seed"})
            ack = await next_frame(ws, "message_ack")
            await ws.aclose()
    return World(api, owner, member, chat_id, ack["message_id"], spare, login.json()["refresh_token"])


@pytest.fixture(scope="module")
def world(stack) -> World:
    return trio.run(_seed, stack.api)


@pytest.fixture(scope="module")
def http(stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, timeout=15) as client:
        yield client


JUNK_PARAM = st.one_of(ODD_TEXT, UNICODE, st.text(max_size=30), st.integers().map(str),
                       st.sampled_from(["-1", "0", "1e3", "0x10", " 1", "1.0", "9" * 30, "%", "%zz", "null"]))
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/json; charset=latin-1", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                 "application/xml", "junk", ""])


@dataclass
class Call:
    method: str
    template: str
    path: str
    query: str
    body: bytes | None
    headers: dict[str, str]
    body_value: Any = None  # the JSON value of the body, when it was one


def path_of(template: str, values: dict[str, Any]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


@st.composite
def calls(draw: st.DrawFn, world: World, operation: tuple[str, str]) -> Call:
    method, template = operation
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    real = world.real_params()
    values = {n: draw(st.one_of(st.sampled_from(real[n]), st.sampled_from(real[n]), JUNK_PARAM)) for n in names}
    known = query_names(method, template)
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(known or ["x"]), st.text(max_size=8)),
                                    JUNK_PARAM), max_size=4))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    query = draw(st.one_of(st.just(query), st.just(query), st.sampled_from(["limit", "=", "&&", "a=%zz", "limit=1&limit=x"])))
    body, value = draw(bodies(world, method, template))
    headers = {"Authorization": draw(st.sampled_from(
        [f"Bearer {world.owner.access_token}"] * 6 + [f"Bearer {world.member.access_token}", "Bearer junk",
                                                      "Basic abc", "", "Bearer"]))}
    if (method, template) in ENDS_SESSION and headers["Authorization"].startswith("Bearer ey"):
        headers["Authorization"] = f"Bearer {world.spare.access_token}"
    if (content_type := draw(CONTENT_TYPES)) is not None:
        headers["Content-Type"] = content_type
    return Call(method, template, path_of(template, values), query, body, headers, value)


@st.composite
def bodies(draw: st.DrawFn, world: World, method: str, template: str) -> tuple[bytes | None, Any]:
    schema = request_schema(method, template)
    if schema is None and draw(st.integers(0, 3)):
        return None, None
    valid = world.valid_bodies().get(template, {})
    known = sorted(schema["properties"]) if schema else []
    value = draw(st.one_of(mutated(valid, known), mutated(valid, known), JSON,
                           st.dictionaries(st.sampled_from(known or ["x"]), HOSTILE, max_size=3)))
    raw = draw(st.one_of(st.just(encode(value).encode()), st.just(encode(value).encode()),
                         BROKEN_JSON.map(str.encode), st.binary(max_size=100),
                         st.just(b"x" * (1024 * 1024 + 1))))
    return raw, value if raw == encode(value).encode() else None


def check(call: Call, answer: httpx.Response) -> None:
    what = f"{call.method} {call.path}?{call.query} {call.headers} {(call.body or b'')[:200]!r}"
    assert answer.status_code < 500, f"{what} -> {answer.status_code} {answer.text[:300]}"
    if answer.status_code < 400:
        return
    assert answer.headers.get("content-type", "").startswith("application/json"), (what, answer.text[:200])
    body = answer.json()
    assert isinstance(body, dict) and set(body) == {"error"}, (what, body)
    code = assert_error_body(body["error"], CODES)
    assert HTTP_STATUS[code] == answer.status_code and code != INTERNAL, (what, answer.status_code, body)


def record(world: World, call: Call, answer: httpx.Response) -> None:
    if call.template == "/api/v1/auth/register" and isinstance(call.body_value, dict):
        username = call.body_value.get("username")
        if isinstance(username, str):
            world.tried_users.add(username)
            if answer.status_code == 201:
                world.created_users.add(username)
    elif call.template == "/api/v1/chats" and call.method == "POST" and answer.status_code in (200, 201):
        world.created_chats.add(answer.json()["chat_id"])
    elif call.path.startswith(f"/api/v1/chats/{world.chat_id}") and call.method in CHANGES_CHAT \
            and answer.is_success:
        world.chat_changes += 1
    if (call.method, call.template) in ENDS_SESSION and answer.status_code == 204:
        world.spare = _login(world, world.spare.username, f"spare{secrets.token_hex(3)}")


def _login(world: World, username: str, device_id: str) -> User:
    with httpx.Client(base_url=world.api) as http:
        answer = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD,
                                                       "device_id": device_id})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return User(username, body["user_id"], body["device_id"], body["access_token"], body["ws_url"])


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_malformed_requests_get_documented_errors_never_5xx(stack, world, http, group) -> None:
    @EXAMPLES
    @given(call=st.sampled_from(GROUPS[group]).flatmap(lambda operation: calls(world, operation)))
    def run(call: Call) -> None:
        url = call.path + (f"?{call.query}" if call.query else "")
        answer = http.request(call.method, url, content=call.body, headers=call.headers)
        check(call, answer)
        record(world, call, answer)

    run()
    assert not [n for n, p in stack.processes.items() if p.poll() is not None]


def test_nothing_partial_is_stored(stack, world, mysql_config) -> None:
    """After every operation was fuzzed (this module's tests run in file order)."""
    users = sorted(world.tried_users)
    if users:
        found = {row[0] for row in query(mysql_config, "SELECT username FROM users WHERE username IN ("
                                         + ", ".join(["%s"] * len(users)) + ")", *users)}
        assert found == world.created_users, f"users stored but not answered 201: {found - world.created_users}"
    fuzz_users = (world.owner.user_id, world.member.user_id, world.spare.user_id)
    chats = {row[0] for row in query(mysql_config, "SELECT chat_id FROM router_conversations WHERE created_by"
                                     " IN (%s, %s, %s)", *fuzz_users)}
    assert chats == world.created_chats | {world.chat_id}
    last = _last_seq(world)
    rows = trio.run(wait_stored, mysql_config, {world.chat_id: last})
    assert [e.seq for e in rows] == list(range(1, last + 1))  # dense, nothing missing or beyond
    assert not [e for e in rows if e.event == "void"], rows
    assert last - 2 <= world.chat_changes, (last, world.chat_changes)
    assert_alive(stack)


def _last_seq(world: World) -> int:
    """The seeded chat's last_seq, asked as whichever fuzzed user still belongs to it."""
    with httpx.Client(base_url=world.api) as http:
        for user in (world.owner, world.member):
            answer = http.get(f"/api/v1/chats/{world.chat_id}", headers=user.auth)
            if answer.status_code == 200:
                return int(answer.json()["last_seq"])
    raise AssertionError("nobody is left in the seeded chat")
