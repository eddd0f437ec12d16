"""proto/openapi.yaml against a running gateway, operation by operation (schemathesis).

Every documented operation gets a bounded number of generated requests, valid and invalid ones,
sent with a real user's bearer token; half of them aim at a real chat, member, message and
device so that they get past the 404s. Every answer must have a documented status, a body that
fits the documented schema, no 5xx but a documented 503, and errors must carry
``{"error": {"code", "message"}}`` with a documented code matching the HTTP status.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from trio_websocket import open_websocket_url

from libs import contracts
from tests.e2e.client import User, login, next_frame, register_and_login, send

pytestmark = pytest.mark.e2e

SCHEMA = schemathesis.openapi.from_path(str(contracts.proto_dir() / "openapi.yaml"))
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
# Error codes and their HTTP statuses, from the table in the document's description.
CODES = {int(code): int(status) for code, status in
         re.findall(r"^\| (\d{4}) \| (\d{3}) \|", SCHEMA.raw_schema["info"]["description"], re.M)}
# These end the session they are called with: each request logs a throwaway device in first.
ENDS_SESSION = {"POST /api/v1/auth/logout", "DELETE /api/v1/auth/sessions/{device_id}"}
EXAMPLES = 40


@dataclass
class World:
    api: str
    owner: User
    member: User
    chat_id: str
    message_id: str
    seq: int


async def _seed(api: str) -> World:
    async with httpx.AsyncClient(base_url=api) as http:
        owner, member = [await register_and_login(http, f"oa_{n}_{secrets.token_hex(4)}")
                         for n in ("owner", "member")]
        chat = await http.post("/api/v1/chats", headers=owner.auth, json={
            "type": "group", "name": "contract", "members": [member.user_id]})
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()["chat_id"]
        async with open_websocket_url(f"{owner.ws_url}?token={owner.access_token}") as ws:
            await send(ws, {"type": "send_message", "id": "c1", "chat_id": chat_id, "content": "hello world"})
            ack = await next_frame(ws, "message_ack")
    return World(api, owner, member, chat_id, ack["message_id"], ack["seq"])


@pytest.fixture(scope="module")
def world(stack) -> World:
    return trio.run(_seed, stack.api)


def _real_path(world: World, device_id: str) -> dict[str, Any]:
    return {"chat_id": world.chat_id, "user_id": world.member.user_id, "message_id": world.message_id,
            "seq": world.seq, "device_id": device_id}


def _token(world: World, label: str) -> tuple[str, str]:
    """(access token, device id) to call ``label`` with."""
    if label not in ENDS_SESSION:
        return world.owner.access_token, world.owner.device_id
    user = trio.run(_fresh_device, world)
    return user.access_token, user.device_id


async def _fresh_device(world: World) -> User:
    async with httpx.AsyncClient(base_url=world.api) as http:
        return await login(http, world.member.username, f"tmp{secrets.token_hex(4)}")


def _cases(op: Any, world: World) -> st.SearchStrategy[Any]:
    names = {p.name for p in op.path_parameters}
    real = {k: v for k, v in _real_path(world, world.member.device_id).items() if k in names}
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return st.one_of(*[op.as_strategy(mode, path_parameters=fixed)
                       for mode in modes for fixed in ([real, None] if real else [None])])


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    documented = str(response.status_code) in case.operation.definition.raw.get("responses", {})
    assert response.status_code < 500 or (response.status_code == 503 and documented), (
        f"{case.operation.label} answered {response.status_code}: {response.text[:300]}")
    return None


def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400 or case.operation.label in ("GET /ready",):
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{case.operation.label}: error body is not JSON: {response.text[:200]}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict) and isinstance(error.get("message"), str), f"no error envelope: {body}"
    assert CODES.get(error.get("code")) == response.status_code, (
        f"{case.operation.label}: code {error.get('code')} with HTTP {response.status_code} is undocumented")
    return None


CHECKS = [no_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, error_envelope]


def test_error_codes_are_read() -> None:
    assert CODES[4000] == 400 and CODES[5003] == 503 and len(CODES) >= 10


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_operation_keeps_its_contract(label: str, world: World) -> None:
    op = OPERATIONS[label]

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=_cases(op, world))
    def run(case: Any) -> None:
        token, device_id = _token(world, label)
        if "device_id" in case.path_parameters and case.path_parameters["device_id"] == world.member.device_id:
            case.path_parameters["device_id"] = device_id
        response = case.call(base_url=world.api, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        case.validate_response(response, checks=CHECKS)

    run()
