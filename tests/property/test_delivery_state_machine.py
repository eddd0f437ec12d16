"""A hypothesis state machine driving real clients against the running services.

Three users share a group chat; the machine sends, takes devices offline and back,
makes them stop and resume acking, and kill -9s and restarts a service. After every step
the history checker (``tests.checker``) compares what each online device holds with
MySQL: every acked message reaches every online member device exactly once after dedup
by (chat, seq), in seq order, with the content that was sent; nothing is lost,
duplicated or left unanswered.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.checker import Expectations, Recorder, check, wait_stored
from tools.stack import Stack

from .phones import ACK_ALL, ACK_NOT_MESSAGES, Phone, Phones, phones_on_a_stack

pytestmark = pytest.mark.e2e
RESTARTABLE = ["delivery_retry", "history", "router"]
CONVERGE_S = 20


@pytest.fixture(scope="module")
def world(common_env) -> Iterator[tuple[Stack, Phones]]:
    with phones_on_a_stack(common_env, 3, NJ_DLV_BACKOFF_S="0.1,0.2,0.4", NJ_DLV_MAX_ATTEMPTS="4",
                           NJ_DLV_SCAN_INTERVAL_MS="20") as both:
        yield both


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self, stack: Stack, pool: Phones, mysql_config: object):
        super().__init__()
        self.stack, self.pool, self.mysql_config = stack, pool, mysql_config
        self.recorder = Recorder()
        self.chat_id = ""
        self.last_acked = 0
        self.restarts = 0

    @initialize()
    def fresh_chat(self) -> None:
        self.pool.run(self._fresh_chat)

    async def _fresh_chat(self) -> None:
        for phone in self.pool.phones:
            phone.policy, phone.recorder = ACK_ALL, self.recorder
            if phone.ws is None:
                await phone.connect(self.pool.nursery)
        owner, *others = self.pool.phones
        self.chat_id = await self.pool.group(owner, others)

    def phone(self, index: int) -> Phone:
        return self.pool.phones[index]

    @rule(index=st.integers(0, 2), text=st.text(min_size=1, max_size=30))
    def send(self, index: int, text: str) -> None:
        phone = self.phone(index)
        if phone.ws is not None:
            answer = self.pool.run(phone.send_text, self.chat_id, text, 15.0)
            if answer is not None and answer["type"] == "message_ack":
                self.last_acked = max(self.last_acked, answer["seq"])

    @rule(index=st.integers(0, 2))
    def go_offline(self, index: int) -> None:
        self.pool.run(self.phone(index).disconnect)

    @rule(index=st.integers(0, 2))
    def reconnect(self, index: int) -> None:
        phone = self.phone(index)
        if phone.ws is None:
            self.pool.run(phone.connect, self.pool.nursery)

    @rule(index=st.integers(0, 2), acking=st.booleans())
    def set_acking(self, index: int, acking: bool) -> None:
        self.phone(index).policy = ACK_ALL if acking else ACK_NOT_MESSAGES

    @precondition(lambda self: self.restarts < 1)
    @rule(service=st.sampled_from(RESTARTABLE))
    def restart(self, service: str) -> None:
        self.restarts += 1
        self.stack.stop(service, kill=True)
        self.stack.start(service)
        self.stack.wait_ready(service)

    @invariant()
    def every_online_device_holds_every_acked_message_once_in_order(self) -> None:
        if self.chat_id:
            self.pool.run(self._converged_check)

    async def _converged_check(self) -> None:
        online = [p for p in self.pool.phones if p.ws is not None]
        seen = max((f["seq"] for p in self.pool.phones for f in p.frames
                    if f.get("chat_id") == self.chat_id and isinstance(f.get("seq"), int)), default=0)
        stored = await wait_stored(self.mysql_config,  # type: ignore[arg-type]
                                   {self.chat_id: max(seen, self.last_acked)})
        last = max((e.seq for e in stored), default=0)
        with trio.move_on_after(CONVERGE_S):
            while not all(self._holds(p, last) for p in online):  # noqa: ASYNC110 - polled state
                await trio.sleep(0.05)
        expect = Expectations(complete=[p.device for p in online], chats=[self.chat_id])
        check(self.recorder, stored, expect).assert_ok()

    def _holds(self, phone: Phone, last: int) -> bool:
        seqs = {f["seq"] for f in phone.frames if f.get("chat_id") == self.chat_id and "seq" in f
                and f["type"] in ("new_message", "message_updated", "chat_updated", "void")}
        senders = {f["seq"] for f in phone.frames if f["type"] == "message_ack" and f["chat_id"] == self.chat_id}
        return set(range(1, last + 1)) <= seqs | senders

    def teardown(self) -> None:
        for phone in self.pool.phones:
            phone.recorder = None


def test_delivery_state_machine(world: tuple[Stack, Phones], mysql_config: object) -> None:
    stack, phones = world
    run_state_machine_as_test(
        lambda: DeliveryMachine(stack, phones, mysql_config),
        # A real system does not replay a failure step for step: report it as found.
        settings=settings(max_examples=12, stateful_step_count=15, deadline=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck)))
