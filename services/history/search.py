"""im.history.search: request checks and the SQL condition for a query's words (no I/O).

Words are runs of letters, digits and underscores (\\w), so MySQL's boolean-mode operators
(+ - < > ( ) ~ * " @) never reach the server: they are dropped, not escaped. Each word long
enough for the FULLTEXT index (and not a stopword, and not CJK, which the default parser
does not split) becomes a required prefix term ``+word*``; the others are matched with
LIKE within the chat. Results are newest first (descending seq), ``before_seq`` pages on.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .domain import MAX_CHAT_ID, MAX_SEQ, MAX_USER_ID, _text_field
from .errors import BadRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY = 256
MAX_WORDS = 8
_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class Terms:
    fulltext: tuple[str, ...]  # MATCH ... AGAINST terms
    like: tuple[str, ...]  # words matched with LIKE '%word%'

    def boolean_query(self) -> str:
        return " ".join(f"+{word}*" for word in self.fulltext)

    def like_patterns(self) -> list[str]:
        return ["%" + re.sub(r"([\\%_])", r"\\\1", word) + "%" for word in self.like]


@dataclass(frozen=True)
class SearchRequest:
    chat_id: str
    user_id: str
    query: str
    limit: int
    before: int | None


def parse_search_request(payload: Mapping[str, Any]) -> SearchRequest:
    query = payload.get("q")
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY:
        raise BadRequest(f"q must be a non-empty string of at most {MAX_QUERY} characters",
                         details={"field": "q"})
    limit = payload.get("limit", DEFAULT_LIMIT)
    if limit is None:
        limit = DEFAULT_LIMIT
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", details={"field": "limit"})
    before = payload.get("before_seq")
    if before is not None and (type(before) is not int or not 0 <= before <= MAX_SEQ):
        raise BadRequest("before_seq must be a non-negative integer", details={"field": "before_seq"})
    return SearchRequest(_text_field(payload, "chat_id", MAX_CHAT_ID),
                         _text_field(payload, "user_id", MAX_USER_ID), query, limit, before)


def split_terms(query: str, min_token: int, max_token: int, stopwords: Collection[str]) -> Terms:
    """The query's words, split by whether the FULLTEXT index can find them."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_WORDS]
    if not words:
        raise BadRequest("q has no words to search for", details={"field": "q"})
    indexed = tuple(w for w in words if min_token <= len(w) <= max_token
                    and w not in stopwords and not _CJK.search(w))
    return Terms(indexed, tuple(w for w in words if w not in indexed))


def search_condition(terms: Terms) -> tuple[str, list[Any]]:
    """SQL condition (ANDed to the chat's) and its arguments."""
    parts: list[str] = []
    args: list[Any] = []
    if terms.fulltext:
        parts.append("MATCH (text_content) AGAINST (%s IN BOOLEAN MODE)")
        args.append(terms.boolean_query())
    for pattern in terms.like_patterns():
        parts.append("text_content LIKE %s ESCAPE '\\\\'")
        args.append(pattern)
    return " AND ".join(parts), args
