"""The NATS bus for trio code: core publish/subscribe, request/reply, JetStream.

``open_bus`` connects; the returned :class:`Bus` is shared by the whole process.
"""

from ._bus import Bus, BusTimeout, NoResponders, Subscription
from ._connect import open_bus
from ._jetstream import JetStreamError, js_publish, js_stored, pull_consumer
from ._message import JsMessage, Message, PubAck

__all__ = ["Bus", "BusTimeout", "JetStreamError", "JsMessage", "Message", "NoResponders",
           "PubAck", "Subscription", "js_publish", "js_stored", "open_bus", "pull_consumer"]
