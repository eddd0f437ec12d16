"""Frames, bodies and stored contents nest at most MAX_DEPTH levels: the bus encoder stops at 255."""

from __future__ import annotations

import orjson
import pytest

from libs.contracts import nested_deeper_than
from services.gateway.domain import MAX_DEPTH, parse_frame
from services.gateway.errors import BadFrame


def nested(levels: int) -> object:
    """``levels`` containers, lists and objects by turns, around a string."""
    value: object = "x"
    for level in range(levels):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("levels", [0, 1, 2, 63, 64, 65, 300, 5000])
def test_depth_counts_containers_without_recursing(levels: int) -> None:
    assert nested_deeper_than(nested(levels), MAX_DEPTH) == (levels > MAX_DEPTH)


def test_a_frame_deeper_than_the_limit_is_malformed_and_one_at_it_passes() -> None:
    frame = {"type": "send_message", "id": "x", "chat_id": "c", "content": "hi"}
    parse_frame(orjson.dumps({**frame, "metadata": nested(MAX_DEPTH - 1)}), 1 << 20)
    with pytest.raises(BadFrame, match="nested deeper"):
        parse_frame(orjson.dumps({**frame, "metadata": nested(MAX_DEPTH)}), 1 << 20)


def test_router_refuses_content_or_metadata_it_could_never_read_back() -> None:
    from services.router.domain import send_request
    from services.router.errors import BadRequest

    send = {"sender_id": "u", "sender_device_id": "d", "client_msg_id": "c", "chat_id": "c", "content": "x"}
    send_request({**send, "content": nested(MAX_DEPTH)}, 4096)
    for field, value in (("content", nested(MAX_DEPTH + 1)), ("metadata", {"m": nested(MAX_DEPTH)})):
        with pytest.raises(BadRequest, match="nested deeper"):
            send_request({**send, field: value}, 4096)
