"""Rendezvous placement of users over gateways."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway import placement

gateway_sets = st.sets(st.from_regex(r"gw-[a-z0-9]{4}", fullmatch=True), min_size=2, max_size=8)
users = st.lists(st.from_regex(r"[A-Z0-9]{8}", fullmatch=True), min_size=1, max_size=50, unique=True)


@settings(max_examples=100)
@given(gateways=gateway_sets, users=users, data=st.data())
def test_removing_a_gateway_moves_only_its_own_users(gateways, users, data):
    gone = data.draw(st.sampled_from(sorted(gateways)))
    before = {u: placement.pick(u, gateways) for u in users}
    after = {u: placement.pick(u, gateways - {gone}) for u in users}
    assert all(after[u] == before[u] for u in users if before[u] != gone)
    assert all(after[u] != gone for u in users)


@settings(max_examples=100)
@given(gateways=gateway_sets, users=users, new=st.from_regex(r"gw-new[0-9]", fullmatch=True))
def test_adding_a_gateway_moves_users_only_onto_it(gateways, users, new):
    before = {u: placement.pick(u, gateways) for u in users}
    after = {u: placement.pick(u, gateways | {new}) for u in users}
    assert all(after[u] in (before[u], new) for u in users)


def test_the_directory_forgets_gateways_that_stop_announcing():
    directory = placement.Directory(ttl_s=15)
    directory.saw("gw-a", "ws://a/ws", now=0)
    directory.saw("gw-b", "ws://b/ws", now=10)
    assert set(directory.live(now=20)) == {"gw-b"}
    assert directory.url_for("anyone", now=100, fallback="ws://self/ws") == "ws://self/ws"
