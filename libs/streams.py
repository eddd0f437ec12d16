"""JetStream stream and consumers, provisioned idempotently by the services that use them.

The catalogue (``proto/subjects.yaml``) documents them; this is the one place that
creates them. Every service ensures the stream at start-up (whichever starts first
creates it) and its own durable consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.api as js_api
import nats.js.errors
import orjson
import trio

from . import log, metrics
from .bus import Bus
from .config import EnvReader
from .errors import Unavailable

STREAM = "IM_MESSAGES"
SUBJECTS = ["im.msg.>"]
logger = log.get("streams")


@dataclass(frozen=True)
class StreamSettings:
    replicas: int = 1
    max_age_s: float = 30 * 86400
    duplicate_window_s: float = 600

    @classmethod
    def read(cls, env: EnvReader) -> StreamSettings:
        return cls(replicas=env.int("NJ_STREAM_REPLICAS", 1, min=1, max=5),
                   max_age_s=env.float("NJ_STREAM_MAX_AGE_S", 30 * 86400, min=60),
                   duplicate_window_s=env.float("NJ_STREAM_DUPLICATE_WINDOW_S", 600, min=1))


def stream_config(settings: StreamSettings) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=STREAM, subjects=SUBJECTS, storage=js_api.StorageType.FILE,
        retention=js_api.RetentionPolicy.LIMITS, discard=js_api.DiscardPolicy.OLD,
        max_age=settings.max_age_s, duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.replicas, allow_direct=True)


def consumer_config(durable: str, ack_wait_s: float = 30.0) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=durable, ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL, ack_wait=ack_wait_s, max_deliver=-1,
        max_ack_pending=10_000, filter_subject="im.msg.>")


async def ensure_stream(bus: Bus, settings: StreamSettings = StreamSettings()) -> None:
    jsm = bus.nc.jsm()
    config = stream_config(settings)
    try:
        await bus.call_aio(jsm.add_stream, config)
    except nats.js.errors.BadRequestError as exc:
        # It exists with other settings: changing a live stream is an operator's decision
        # (natterjack bus streams / nats stream edit), never a side effect of a restart.
        logger.warning("streams.settings_differ", stream=STREAM, error=str(exc))
    logger.info("streams.stream_ready", stream=STREAM)


async def ensure_consumer(bus: Bus, durable: str, ack_wait_s: float = 30.0) -> None:
    await bus.call_aio(bus.nc.jsm().add_consumer, STREAM, consumer_config(durable, ack_wait_s))
    logger.info("streams.consumer_ready", stream=STREAM, consumer=durable)


async def watch_consumer(bus: Bus, durable: str, interval_s: float = 5.0) -> None:
    """Export the consumer's lag (``nj_jetstream_consumer_pending``), unacked and
    redelivering counts, asking JetStream every ``interval_s`` (CONSUMER.INFO)."""
    subject = f"$JS.API.CONSUMER.INFO.{STREAM}.{durable}"
    while True:
        try:
            info = orjson.loads((await bus.request(subject, b"", timeout=2.0)).data)
            metrics.CONSUMER_PENDING.labels(durable).set(info["num_pending"])
            metrics.CONSUMER_ACK_PENDING.labels(durable).set(info["num_ack_pending"])
            metrics.CONSUMER_REDELIVERED.labels(durable).set(info["num_redelivered"])
        except (Unavailable, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            logger.debug("streams.consumer_info_failed", consumer=durable, error=repr(exc))
        await trio.sleep(interval_s)
