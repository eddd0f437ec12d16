"""natterjack client SDK (trio).

    async with Client("http://127.0.0.1:8080") as client:
        await client.login("ann", "correct horse")
        async with client.connect() as session:
            await session.send_message(chat_id, "hi")
            async for event in session:
                print(event)

``Client`` speaks the REST API; ``client.connect()`` opens a ``Session`` over the
WebSocket that reconnects by itself and hands out typed events in per-chat seq order.
Every error is a ``NatterjackClientError`` carrying the contract's ``code``.
"""

from ._client import DEFAULT_API, Client
from ._errors import ApiError, LoginRequired, NatterjackClientError, Unavailable
from ._events import (
                      ChatUpdated,
                      DeliveryFailed,
                      ErrorEvent,
                      Event,
                      MessageAck,
                      MessageUpdated,
                      NewMessage,
                      PresenceUpdate,
                      Receipt,
                      StoredEvent,
                      SyncDone,
                      SyncRequired,
                      TypingIndicator,
                      UnknownEvent,
                      Void,
)
from ._models import (
                      Chat,
                      ChatSummary,
                      Credentials,
                      HistoryPage,
                      Member,
                      MessageStatus,
                      MessageType,
                      Presence,
                      RecipientStatus,
)
from ._ordering import ReconnectPolicy
from ._session import Session, SessionOptions

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_API", "ApiError", "Chat", "ChatSummary", "ChatUpdated", "Client", "Credentials",
    "DeliveryFailed", "ErrorEvent", "Event", "HistoryPage", "LoginRequired", "Member",
    "MessageAck", "MessageStatus", "MessageType", "MessageUpdated", "NatterjackClientError",
    "NewMessage", "Presence", "PresenceUpdate", "Receipt", "RecipientStatus", "ReconnectPolicy",
    "Session", "SessionOptions", "StoredEvent", "SyncDone", "SyncRequired", "TypingIndicator",
    "Unavailable", "UnknownEvent", "Void",
]
