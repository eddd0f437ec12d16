"""im.router.holes request checks (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import MALFORMED
from services.router.errors import BadRequest
from services.router.holes import MAX_SEQS, hole_seqs


@settings(max_examples=100)
@given(st.lists(st.integers(1, 2**53), min_size=1, max_size=MAX_SEQS))
def test_seqs_come_back_distinct_and_ascending(seqs) -> None:
    assert hole_seqs({"seqs": seqs}) == sorted(set(seqs))


@pytest.mark.parametrize("seqs", [None, [], [0], [-1], [True], ["3"], [1.5], 7, list(range(1, MAX_SEQS + 2))])
def test_bad_seqs_are_refused_with_4000(seqs) -> None:
    with pytest.raises(BadRequest) as caught:
        hole_seqs({"seqs": seqs})
    assert caught.value.code == MALFORMED
