"""Properties 3, 4, 15 and 16 of the design (seed 000) through the running services.

The whole product runs once per module as processes (its own nats-server), with a
millisecond redelivery backoff and three attempts set through configuration. Eight
users stay connected across examples (``phones.Phones``); every example makes a fresh
group chat, so examples never see each other's messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .phones import ACK_ALL, ACK_NOT_MESSAGES, Phone, Phones, phones_on_a_stack

ATTEMPTS = 3
EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
texts = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4)
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def phones(common_env) -> Iterator[Phones]:
    with phones_on_a_stack(common_env, 8, NJ_DLV_BACKOFF_S="0.05,0.05,0.1",
                           NJ_DLV_MAX_ATTEMPTS=str(ATTEMPTS), NJ_DLV_SCAN_INTERVAL_MS="10") as (_, pool):
        yield pool


def pick(data: st.DataObject, pool: Phones, count: int) -> tuple[Phone, list[Phone]]:
    chosen = data.draw(st.permutations(pool.phones))[: count + 1]
    return chosen[0], chosen[1:]


async def settle(pool: Phones, phones: list[Phone]) -> None:
    """Every phone online and acking (an earlier example may have failed half-way)."""
    for phone in phones:
        phone.policy = ACK_ALL
        if phone.ws is None:
            await phone.connect(pool.nursery)


# ---- property 3 ---------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data(), contents=texts, recipients=st.integers(1, 4))
def test_property_3_online_delivery_with_confirmation(phones: Phones, data: st.DataObject,
                                                      contents: list[str], recipients: int) -> None:
    """Property 3: Message Delivery Guarantees — for any message sent to an online recipient,
    the message should be delivered immediately with delivery confirmation sent back to the
    sender, implementing at-least-once delivery semantics.
    Requirements R2.1, R2.6, R7.1, R7.3: live delivery, confirmation to the sender, at least once.
    """
    sender, others = pick(data, phones, recipients)
    phones.run(online_scenario, phones, sender, others, contents)


async def online_scenario(pool: Phones, sender: Phone, others: list[Phone], contents: list[str]) -> None:
    await settle(pool, [sender, *others])
    chat_id = await pool.group(sender, others)
    acks = [await sender.send_text(chat_id, text) for text in contents]
    assert all(a["type"] == "message_ack" for a in acks), acks
    last = acks[-1]["seq"]
    for phone in others:
        for ack, text in zip(acks, contents, strict=True):
            got = await phone.wait_for(lambda f, a=ack: f["type"] == "new_message" and f.get("seq") == a["seq"]
                                       and f["chat_id"] == chat_id)
            assert (got["content"], got["message_id"], got["sender_id"]) == \
                (text, ack["message_id"], sender.user.user_id)
        seqs = [f["seq"] for f in first_arrivals(phone.of_chat(chat_id, "new_message"))]
        assert seqs == sorted(seqs)
        await sender.wait_for(lambda f, p=phone: f["type"] == "receipt" and f["chat_id"] == chat_id
                              and f["user_id"] == p.user.user_id and f["status"] == "delivered"
                              and f["seq"] >= last)


# ---- property 4 ---------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data(), contents=texts, live_after=st.integers(0, 2))
def test_property_4_offline_messages_arrive_on_connect(phones: Phones, data: st.DataObject,
                                                       contents: list[str], live_after: int) -> None:
    """Property 4: Offline Message Handling — for any message sent to an offline recipient,
    the message should be persisted and delivered when the recipient comes online.
    Requirements R2.2, R2.3: kept for an offline recipient, delivered when it comes online."""
    sender, (recipient,) = pick(data, phones, 1)
    phones.run(offline_scenario, phones, sender, recipient, contents, live_after)


async def offline_scenario(pool: Phones, sender: Phone, recipient: Phone, contents: list[str],
                           live_after: int) -> None:
    await settle(pool, [sender, recipient])
    chat_id = await pool.group(sender, [recipient])
    await pool.go_offline(recipient)
    acks = [await sender.send_text(chat_id, text) for text in contents]
    status = await pool.status(sender, acks[0]["message_id"])
    entry = [r for r in status.json()["recipients"] if r["user_id"] == recipient.user.user_id]
    assert [r["status"] for r in entry] == ["pending"]
    start = len(recipient.frames)
    await recipient.connect(pool.nursery)
    live = [await sender.send_text(chat_id, f"live {i}") for i in range(live_after)]
    want = [a["seq"] for a in acks + live]
    await recipient.wait_for(lambda f: f["type"] == "new_message" and f["chat_id"] == chat_id
                             and f["seq"] == want[-1], start)
    got = first_arrivals(f for f in recipient.frames[start:]
                         if f["type"] == "new_message" and f["chat_id"] == chat_id)
    assert [f["seq"] for f in got] == want  # each once after dedup, in seq order, backlog first
    assert [f["content"] for f in got[: len(contents)]] == contents


def first_arrivals(frames: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames with repeats of a (chat, seq) dropped, as the contract tells clients to."""
    seen: set[tuple[str, int]] = set()
    out = []
    for frame in frames:
        if (frame["chat_id"], frame["seq"]) not in seen:
            seen.add((frame["chat_id"], frame["seq"]))
            out.append(frame)
    return out


# ---- properties 15 and 16 -----------------------------------------------------------------
BEHAVIOURS = ["acks", "never_acks", "offline", "reads"]


@EXAMPLES
@given(data=st.data(), behaviours=st.lists(st.sampled_from(BEHAVIOURS[:2]), min_size=1, max_size=3))
def test_property_15_retry_then_failure(phones: Phones, data: st.DataObject, behaviours: list[str]) -> None:
    """Property 15: Message Retry and Failure Handling — for any failed message delivery, the
    system should retry with backoff, and after maximum attempts, mark the message as failed.
    Requirements R7.2, R7.4: retried with backoff, marked failed after the last attempt."""
    sender, others = pick(data, phones, len(behaviours))
    phones.run(retry_scenario, phones, sender, list(zip(others, behaviours, strict=True)))


async def retry_scenario(pool: Phones, sender: Phone, plan: list[tuple[Phone, str]]) -> None:
    await settle(pool, [sender, *(p for p, _ in plan)])
    chat_id = await pool.group(sender, [p for p, _ in plan])
    for phone, behaviour in plan:
        phone.policy = ACK_NOT_MESSAGES if behaviour == "never_acks" else ACK_ALL
    ack = await sender.send_text(chat_id, "hello?")
    for phone, behaviour in plan:
        want = "failed" if behaviour == "never_acks" else "delivered"
        entry = await wait_status(pool, sender, ack["message_id"], phone, want)
        if behaviour == "never_acks":
            await sender.wait_for(lambda f, p=phone: f["type"] == "delivery_failed"
                                  and f["message_id"] == ack["message_id"] and f["user_id"] == p.user.user_id)
            assert entry["attempts"] == ATTEMPTS
            with trio.fail_after(5):  # the push, then each resend (the last may still be on its way)
                while len(copies := [f for f in phone.of_chat(chat_id, "new_message")  # noqa: ASYNC110
                                     if f["seq"] == ack["seq"]]) < ATTEMPTS:
                    await trio.sleep(0.01)
            assert len(copies) == ATTEMPTS
    await trio.sleep(0.3)  # past the whole schedule: nobody who acked is ever failed
    for phone, behaviour in plan:
        if behaviour == "acks":
            assert not [f for f in sender.of_chat(chat_id, "delivery_failed")
                        if f["user_id"] == phone.user.user_id]


@EXAMPLES
@given(data=st.data(), behaviours=st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=4))
def test_property_16_status_api_is_accurate(phones: Phones, data: st.DataObject, behaviours: list[str]) -> None:
    """Property 16: Delivery Status API — for any message, the system should provide APIs to
    query its delivery status and return accurate information.
    Requirement R7.5: the delivery status API."""
    sender, others = pick(data, phones, len(behaviours))
    outsider = next(p for p in phones.phones if p is not sender and p not in others) \
        if len(others) < len(phones.phones) - 1 else None
    phones.run(status_scenario, phones, sender, list(zip(others, behaviours, strict=True)), outsider)


EXPECTED = {"acks": "delivered", "never_acks": "failed", "offline": "pending", "reads": "read"}


async def status_scenario(pool: Phones, sender: Phone, plan: list[tuple[Phone, str]],
                          outsider: Phone | None) -> None:
    await settle(pool, [sender, *(p for p, _ in plan)])
    chat_id = await pool.group(sender, [p for p, _ in plan])
    for phone, behaviour in plan:
        phone.policy = ACK_NOT_MESSAGES if behaviour == "never_acks" else ACK_ALL
        if behaviour == "offline":
            await pool.go_offline(phone)
    ack = await sender.send_text(chat_id, "status?")
    for phone, behaviour in plan:
        if behaviour == "reads":
            await phone.wait_for(lambda f: f["type"] == "new_message" and f["seq"] == ack["seq"]
                                 and f["chat_id"] == chat_id)
            await phone.send({"type": "read", "chat_id": chat_id, "seq": ack["seq"]})
    for phone, behaviour in plan:
        await wait_status(pool, sender, ack["message_id"], phone, EXPECTED[behaviour])
    await trio.sleep(0.3)  # past the whole schedule: the states hold (an offline device stays pending)
    body = (await pool.status(sender, ack["message_id"])).json()
    now = {(r["user_id"], r["device_id"]): r["status"] for r in body["recipients"]}
    assert {phone.key: now.get(phone.key) for phone, _ in plan} == \
        {phone.key: EXPECTED[behaviour] for phone, behaviour in plan}
    assert (body["chat_id"], body["seq"]) == (chat_id, ack["seq"])
    assert sender.key not in {(r["user_id"], r["device_id"]) for r in body["recipients"]}
    if outsider is not None:
        denied = await pool.status(outsider, ack["message_id"])
        assert denied.status_code == 403 and denied.json()["error"]["code"] == 4003
    for phone, behaviour in plan:
        if behaviour == "offline":
            await phone.connect(pool.nursery)


async def wait_status(pool: Phones, asker: Phone, message_id: str, phone: Phone, want: str,
                      timeout: float = 10) -> dict[str, Any]:
    """The status entry of ``phone`` once it says ``want`` (state moves on within moments)."""
    seen: Any = None
    with trio.move_on_after(timeout):
        while True:
            answer = await pool.status(asker, message_id)
            assert answer.status_code == 200, answer.text
            mine = [r for r in answer.json()["recipients"] if (r["user_id"], r["device_id"]) == phone.key]
            seen = mine
            if mine and mine[0]["status"] == want:
                return dict(mine[0])
            await trio.sleep(0.02)
    raise AssertionError(f"{phone.key} never became {want}; last seen {seen}")
