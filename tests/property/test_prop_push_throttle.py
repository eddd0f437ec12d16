"""The push throttle (services/delivery_retry/push_domain.py), property-tested.

A run is a list of steps on a made-up clock: a message for a user, or time passing. After
every step the test asks the throttle what is due, as the pusher's loop does, and may
refuse some of those pushes as if another replica held the user's Redis key (they are
deferred). At the end the throttle is drained, as at shutdown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from services.delivery_retry.push_domain import Push, Throttle

INTERVAL = 1.0
USERS = ["u0", "u1", "u2", "u3", "u4"]


def eighths(lo: int, hi: int) -> st.SearchStrategy[float]:
    """Times in eighths of a second: exact in binary, so comparisons at a window's end hold."""
    return st.integers(min_value=lo, max_value=hi).map(lambda k: k / 8)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("message"), st.sampled_from(USERS)),
        st.tuples(st.just("wait"), eighths(0, 20)),
    ),
    max_size=60,
)


@dataclass
class Run:
    throttle: Throttle
    now: float = 0.0
    offered: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    sent: list[tuple[float, Push]] = field(default_factory=list)
    early: list[Push] = field(default_factory=list)
    drained: list[Push] = field(default_factory=list)

    def message(self, user: str) -> None:
        number = sum(map(len, self.offered.values()))
        self.offered[user].append(number)
        self.early += self.throttle.offer(user, {"n": number}, self.now)

    def tick(self, data: st.DataObject) -> None:
        for push in self.throttle.due(self.now):
            if data.draw(st.booleans(), label=f"refuse {push.user_id}"):
                held = data.draw(eighths(1, 8), label="held")
                self.throttle.defer(push, self.now + held)
            else:
                self.sent.append((self.now, push))

    def last_sent(self, user: str) -> float | None:
        times = [at for at, push in self.sent if push.user_id == user]
        return times[-1] if times else None

    def every_push(self) -> list[Push]:
        return [push for _, push in self.sent] + self.early + self.drained


def play(data: st.DataObject, run: Run, plan: list[tuple[str, object]]) -> None:
    for kind, arg in plan:
        if kind == "wait":
            run.now += float(arg)  # type: ignore[arg-type]
        else:
            run.message(str(arg))
        run.tick(data)
        assert len(run.throttle) <= run.throttle.max_users
    run.drained = run.throttle.drain()


def assert_counts_add_up(run: Run) -> None:
    counts: dict[str, int] = defaultdict(int)
    for push in run.every_push():
        assert push.count >= 1
        counts[push.user_id] += push.count
    assert counts == {user: len(numbers) for user, numbers in run.offered.items()}
    assert run.throttle.waiting == 0 and len(run.throttle) == 0


@settings(max_examples=300, deadline=None)
@given(st.data(), steps)
def test_at_most_one_push_per_user_per_interval(data: st.DataObject, plan) -> None:
    run = Run(Throttle(INTERVAL, max_users=len(USERS)))
    play(data, run, plan)
    for user in USERS:
        times = [at for at, push in run.sent if push.user_id == user]
        assert all(b - a >= INTERVAL for a, b in zip(times, times[1:], strict=False)), times
    assert run.early == []


@settings(max_examples=300, deadline=None)
@given(st.data(), steps, st.integers(min_value=1, max_value=len(USERS) + 1))
def test_counts_add_up_and_nothing_is_lost_at_drain(data: st.DataObject, plan, cap: int) -> None:
    run = Run(Throttle(INTERVAL, max_users=cap))
    play(data, run, plan)
    assert_counts_add_up(run)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_each_push_carries_the_newest_message(plan) -> None:
    throttle, now, latest = Throttle(INTERVAL, max_users=len(USERS)), 0.0, {}
    for number, (kind, arg) in enumerate(plan):
        if kind == "wait":
            now += float(arg)  # type: ignore[arg-type]
        else:
            throttle.offer(str(arg), {"n": number}, now)
            latest[str(arg)] = number
        for push in throttle.due(now):
            assert push.newest == {"n": latest[push.user_id]}
    for push in throttle.drain():
        assert push.newest == {"n": latest[push.user_id]}


@settings(max_examples=200, deadline=None)
@given(steps)
def test_the_first_message_of_a_quiet_user_goes_at_once(plan) -> None:
    throttle, now, last_push = Throttle(INTERVAL, max_users=len(USERS)), 0.0, {}
    for kind, arg in plan:
        if kind == "wait":
            now += float(arg)  # type: ignore[arg-type]
            for push in throttle.due(now):
                last_push[push.user_id] = now
            continue
        user = str(arg)
        quiet = user not in last_push or now - last_push[user] >= INTERVAL
        throttle.offer(user, {}, now)
        pushed = {push.user_id for push in throttle.due(now)}
        assert (user in pushed) == quiet
        last_push.update({u: now for u in pushed})
