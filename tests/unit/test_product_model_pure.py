"""The pure product model of the model-based test (tests/property/product_model.py): history
paging as the contract words it, what a connection is owed, receipts, message status."""

from __future__ import annotations

import pytest

from tests.property.product_model import Page, ProductModel

pytestmark = pytest.mark.timeout(30)
A, B, C = ("ann", "d1"), ("bob", "d1"), ("bob", "d2")


def chat_of_ten() -> ProductModel:
    """ann and bob in group g: the creation at seq 1, nine messages from ann at 2..10."""
    model = ProductModel()
    for key in (A, B):
        model.add_user(key[0], key[0])
        model.add_device(key)
    model.create_chat("g", "group", "ann", ["bob"])
    for n in range(9):
        model.message("g", A, f"c{n}", f"m{n}", "hi")
    return model


@pytest.mark.parametrize(("before", "after", "limit", "page"), [
    (None, None, 3, Page([8, 9, 10], True)),      # the newest
    (None, None, 50, Page(list(range(1, 11)), False)),
    (5, None, 3, Page([2, 3, 4], True)),          # just below before_seq
    (5, None, 4, Page([1, 2, 3, 4], False)),
    (None, 7, 2, Page([8, 9], True)),             # just above after_seq, oldest first
    (None, 7, 3, Page([8, 9, 10], False)),
    (9, 2, 3, Page([3, 4, 5], True)),             # strictly between, oldest first
    (9, 2, 6, Page([3, 4, 5, 6, 7, 8], False)),
    (3, 2, 5, Page([], False)),
    (None, 10, 5, Page([], False)),
    (40, None, 2, Page([9, 10], True)),
])
def test_pages_follow_the_contract(before: int | None, after: int | None, limit: int, page: Page) -> None:
    assert chat_of_ten().page("g", before, after, limit) == page


def test_a_connection_is_owed_what_lies_above_its_cursor() -> None:
    model = chat_of_ten()
    model.connect(B)
    assert model.window(B, "g") == (frozenset({1}), 10)
    model.ack(B, "g", 6)
    model.disconnect(B)
    model.message("g", A, "late", "m-late", "hi")
    model.connect(B)
    assert model.window(B, "g") == (frozenset({7}), 11)


def test_joining_online_owes_from_the_join_or_the_cursor_and_leaving_ends_the_window() -> None:
    model = chat_of_ten()
    model.add_user("cy", "cy")
    model.add_device(("cy", "d1"))
    model.connect(("cy", "d1"))
    assert model.add_member("g", "cy") == 11
    assert model.window(("cy", "d1"), "g") == (frozenset({1, 11}), 11)
    assert model.remove_member("g", "cy") == 12
    model.message("g", A, "after", "m-after", "hi")
    assert model.window(("cy", "d1"), "g") == (frozenset({1, 11}), 12)


def test_acks_send_delivered_to_the_senders_online_devices_and_reads_to_the_others() -> None:
    model = chat_of_ten()
    model.connect(A)
    assert model.ack(B, "g", 4) == {(A, ("g", 4, "bob", "d1", "delivered"))}
    assert model.ack(B, "g", 3) == set()  # cumulative: nothing moves
    assert model.ack(A, "g", 10) == set()  # its own messages
    assert model.read("bob", "g", 5) == {(A, ("g", 5, "bob", None, "read"))}
    assert model.read("bob", "g", 5) == set()


def test_status_per_device_and_members_count_from_their_latest_joining() -> None:
    model = chat_of_ten()
    model.add_device(C)
    model.ack(B, "g", 5)
    model.read("bob", "g", 5)
    model.ack(C, "g", 5)
    assert model.status("m2") == {B: "read", C: "read"}  # m2 is seq 4
    assert model.status("m5") == {B: "pending", C: "pending"}  # seq 7
    model.remove_member("g", "bob")
    assert model.status("m2") == {}
    model.add_member("g", "bob")
    assert model.status("m2") == {}  # back after the message: not a recipient of it
    model.message("g", A, "new", "m-new", "hi")
    assert model.status("m-new") == {B: "pending", C: "pending"}
