"""Stored rows as read back, and their page items showing the message's current state."""

from __future__ import annotations

from dataclasses import dataclass

from .domain import page_item_json
from .updates import ACTIVE, STATE_OF_KIND

_MESSAGE_PREFIX = b'{"type":"message",'


@dataclass(frozen=True, slots=True)
class StoredBody:
    """One stored event as read back: its body and, for messages, the current state."""

    seq: int
    body: str
    state: str = ACTIVE
    current_body: str | None = None
    updated_seq: int | None = None



def item_json(row: StoredBody) -> bytes:
    """The page item of a stored row; message items carry their state (and its seqs)."""
    item = page_item_json(row.current_body or row.body)
    if not item.startswith(_MESSAGE_PREFIX) or not item.endswith(b"}"):
        return item
    state = row.state if row.state in (ACTIVE, *STATE_OF_KIND.values()) else ACTIVE
    extra = b',"state":"' + state.encode() + b'"'
    if state != ACTIVE and row.updated_seq is not None:
        seq = str(row.updated_seq).encode()
        if state == "edited":
            extra += b',"edited_seq":' + seq
        extra += b',"updated_seq":' + seq
    return item[:-1] + extra + b"}"
