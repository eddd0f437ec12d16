"""Reading the Redis claim of a send's id (no I/O): SET NX's answer and the value found."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.storage import CachedClaim

acks = st.fixed_dictionaries({"message_id": st.text(min_size=1, max_size=26), "chat_id": st.text(max_size=26),
                              "seq": st.integers(1, 2**40), "ts": st.integers(0, 2**45)})


def test_a_claim_set_here_is_ours() -> None:
    assert CachedClaim.read(True, b"pending") == CachedClaim(ours=True, previous=None)


def test_a_claim_in_progress_elsewhere_reads_pending() -> None:
    assert CachedClaim.read(False, b"pending") == CachedClaim(ours=False, previous={"pending": True})


def test_an_entry_expired_between_set_and_get_lets_the_send_go_on() -> None:
    claim = CachedClaim.read(False, None)
    assert claim.previous is None and claim.available


@settings(max_examples=100)
@given(acks)
def test_a_recorded_ack_is_answered_as_stored(ack: dict[str, object]) -> None:
    assert CachedClaim.read(False, orjson.dumps(ack)) == CachedClaim(ours=False, previous=ack)
