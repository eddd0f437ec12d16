"""Message states (edit / recall / delete), their page items, and search terms."""

from __future__ import annotations

import orjson
import pytest

from libs.errors import NatterjackError
from services.history.domain import decode_event
from services.history.search import parse_search_request, search_condition, split_terms
from services.history.state import StoredBody, item_json
from services.history.updates import apply_update, parse_update, should_apply

TARGET = orjson.dumps({"event": "message", "chat_id": "c1", "seq": 2, "ts": 5, "content_type": "text",
                       "content": "old", "metadata": {"z": 1, "a": 2}}).decode()


def update(kind: str, seq: int = 9, **extra) -> dict:
    return {"event": "message_updated", "chat_id": "c1", "seq": seq, "ts": 9, "target_seq": 2,
            "kind": kind, "actor_id": "u1", **extra}


def test_edit_replaces_content_and_keeps_everything_else() -> None:
    change = parse_update(update("edit", content={"y": 1.5, "x": None}), 9)
    body, text = apply_update(TARGET, change)
    assert body == TARGET.replace('"old"', '{"y":1.5,"x":null}') and text is None
    body, text = apply_update(TARGET, parse_update(update("edit", content="new words"), 9))
    assert orjson.loads(body)["content"] == "new words" and text == "new words"


@pytest.mark.parametrize("kind", ["recall", "delete"])
def test_recall_and_delete_null_the_content_and_the_text(kind: str) -> None:
    body, text = apply_update(TARGET, parse_update(update(kind, content="ignored"), 9))
    assert orjson.loads(body)["content"] is None and text is None


def test_only_newer_updates_apply_and_bad_ones_are_ignored() -> None:
    change = parse_update(update("recall", seq=9), 9)
    assert should_apply(None, change) and should_apply(8, change) and not should_apply(9, change)
    assert parse_update(update("pin"), 9) is None
    assert parse_update({**update("edit"), "target_seq": "2"}, 9) is None
    assert decode_event(orjson.dumps(update("recall"))).update == change


def test_page_items_carry_the_state() -> None:
    active = orjson.loads(item_json(StoredBody(2, TARGET)))
    assert list(active)[-1] == "state" and active["state"] == "active" and active["content"] == "old"
    current = TARGET.replace('"old"', '"new"')
    edited = orjson.loads(item_json(StoredBody(2, TARGET, "edited", current, 9)))
    assert (edited["content"], edited["edited_seq"], edited["updated_seq"]) == ("new", 9, 9)
    recalled = orjson.loads(item_json(StoredBody(2, TARGET, "recalled", TARGET.replace('"old"', "null"), 7)))
    assert recalled["content"] is None and recalled["updated_seq"] == 7 and "edited_seq" not in recalled
    void = orjson.dumps({"event": "void", "chat_id": "c1", "seq": 3, "ts": 1}).decode()
    assert "state" not in orjson.loads(item_json(StoredBody(3, void)))


def test_search_words_split_between_fulltext_and_like() -> None:
    terms = split_terms('+"Quick" -brown (fox) ab 你好 the 100%', 3, 84, frozenset({"the"}))
    assert terms.fulltext == ("quick", "brown", "fox", "100")
    assert terms.like == ("ab", "你好", "the")
    assert terms.boolean_query() == "+quick* +brown* +fox* +100*"
    sql, args = search_condition(split_terms("a_b", 3, 84, frozenset()))
    assert "MATCH" in sql and args == ["+a_b*"]
    sql, args = search_condition(split_terms("a_", 3, 84, frozenset()))
    assert "LIKE" in sql and args == ["%a\\_%"]
    with pytest.raises(NatterjackError):
        split_terms("!!! ???", 3, 84, frozenset())


@pytest.mark.parametrize("payload", [{"q": ""}, {"q": 5}, {"q": "x" * 257}, {"q": "a", "limit": 0},
                                     {"q": "a", "limit": 101}, {"q": "a", "before_seq": -1},
                                     {"q": "a", "chat_id": ""}])
def test_bad_search_requests_are_4000(payload: dict) -> None:
    with pytest.raises(NatterjackError) as caught:
        parse_search_request({"chat_id": "c1", "user_id": "u1", **payload})
    assert caught.value.code == 4000


def test_search_defaults() -> None:
    request = parse_search_request({"chat_id": "c1", "user_id": "u1", "q": "hello"})
    assert (request.limit, request.before) == (20, None)
