"""The HTTP edge every service shares (libs/http): routing errors carry the contract's error
body, and an answer given before the request body was read closes the connection."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.health import Health
from libs.http import build_app


async def ignores_body(_: Request) -> Response:
    return Response(status_code=401)


async def reads_body(request: Request) -> Response:
    return Response(str(len(await request.body())))


def client() -> httpx.AsyncClient:
    app = build_app(Health({}), [Route("/ignores", ignores_body, methods=["POST", "GET"]),
                                 Route("/reads", reads_body, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def test_an_answer_before_the_body_was_read_closes_the_connection() -> None:
    async with client() as http:
        assert (await http.post("/ignores", content=b"x" * 100_000)).headers.get("connection") == "close"
        assert (await http.post("/reads", content=b"x" * 100_000)).headers.get("connection") is None
        assert (await http.get("/ignores")).headers.get("connection") is None  # no body to read


async def test_unknown_paths_and_methods_answer_with_the_error_body() -> None:
    async with client() as http:
        missing = await http.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == 4004
        wrong = await http.delete("/reads")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == 4000
