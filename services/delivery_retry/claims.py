"""One scheduler round's MySQL reads in one transaction (one worker-thread hop).

A round claims the due looks and retries (``FOR UPDATE SKIP LOCKED`` and a lease, as
:mod:`.schedule_storage` explains) and, in the same transaction, reads what working them
needs: each looked-at chat's active members and cursors, each retry's cursor and the
highest seq it still needs, and when the next row falls due. Reading them at claim time
instead of per item just before use only makes them a few milliseconds older: a device
that acks meanwhile is found caught up at its retry, as it would be a step later anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHECK_COLUMNS = "chat_id, check_seq"
RETRY_COLUMNS = "user_id, device_id, chat_id, gateway_id, target_seq, attempts"
NOT_OWN = "NOT (sender_id <=> %s AND sender_device_id <=> %s)"
CURSOR = "SELECT acked_seq FROM dlv_cursors WHERE user_id = %s AND device_id = %s AND chat_id = %s"
NEEDED = ("SELECT MAX(seq) AS needed FROM dlv_events WHERE chat_id = %s AND seq > %s "
          f"AND seq <= %s AND {NOT_OWN}")


@dataclass(frozen=True, slots=True)
class Check:
    chat_id: str
    check_seq: int


@dataclass(frozen=True, slots=True)
class Retry:
    user_id: str
    device_id: str
    chat_id: str
    gateway_id: str
    target_seq: int
    attempts: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.device_id, self.chat_id)


@dataclass(frozen=True, slots=True)
class Look:
    """A claimed chat look with its active members and its devices' cursors."""

    check: Check
    members: list[str]
    cursors: dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A claimed retry with the device's cursor and the highest seq it still needs."""

    retry: Retry
    cursor: int
    needed: int


@dataclass(frozen=True, slots=True)
class Due:
    looks: list[Look] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    next_due_ms: int | None = None  # the earliest row left (leased ones included); None: none


def claim_due(cur: Any, now_ms: int, lease_ms: int, limit: int) -> Due:
    checks = [Check(r["chat_id"], int(r["check_seq"])) for r in claim(
        cur, "dlv_checks", CHECK_COLUMNS, "due_ts", ("chat_id",), now_ms, lease_ms, limit)]
    retries = [Retry(r["user_id"], r["device_id"], r["chat_id"], r["gateway_id"],
                     int(r["target_seq"]), int(r["attempts"])) for r in claim(
        cur, "dlv_retries", RETRY_COLUMNS, "next_attempt_ts", ("user_id", "device_id", "chat_id"),
        now_ms, lease_ms, limit)]
    return Due(_looks(cur, checks), _attempts(cur, retries), _next_due(cur))


def claim(cur: Any, table: str, columns: str, due: str, key: tuple[str, ...],
           now_ms: int, lease_ms: int, limit: int) -> list[dict[str, Any]]:
    cur.execute(f"SELECT {columns} FROM {table} WHERE {due} <= %s ORDER BY {due} "
                f"LIMIT %s FOR UPDATE SKIP LOCKED", (now_ms, limit))
    rows = list(cur.fetchall())
    if rows:
        where = " AND ".join(f"{k} = %s" for k in key)
        cur.executemany(f"UPDATE {table} SET {due} = %s WHERE {where}",
                        [(now_ms + lease_ms, *(r[k] for k in key)) for r in rows])
    return rows


def _looks(cur: Any, checks: list[Check]) -> list[Look]:
    if not checks:
        return []
    chats = sorted({c.chat_id for c in checks})
    members: dict[str, list[str]] = {c: [] for c in chats}
    cursors: dict[str, dict[tuple[str, str], int]] = {c: {} for c in chats}
    inside = ", ".join(["%s"] * len(chats))
    cur.execute(f"SELECT chat_id, user_id FROM dlv_members WHERE chat_id IN ({inside}) "
                "AND active = 1", chats)
    for row in cur.fetchall():
        members[row["chat_id"]].append(row["user_id"])
    cur.execute(f"SELECT chat_id, user_id, device_id, acked_seq FROM dlv_cursors "
                f"WHERE chat_id IN ({inside})", chats)
    for row in cur.fetchall():
        cursors[row["chat_id"]][(row["user_id"], row["device_id"])] = int(row["acked_seq"])
    return [Look(c, members[c.chat_id], cursors[c.chat_id]) for c in checks]


def _attempts(cur: Any, retries: list[Retry]) -> list[Attempt]:
    out = []
    for retry in retries:  # rare (devices that did not ack in time): a query each is fine
        cur.execute(CURSOR, retry.key)
        row = cur.fetchone()
        cursor = int(row["acked_seq"]) if row else 0
        out.append(Attempt(retry, cursor, needed_up_to(cur, retry, cursor)))
    return out


def needed_up_to(cur: Any, retry: Retry, cursor: int) -> int:
    """The highest seq in (cursor, target] the device did not send itself (0: none)."""
    cur.execute(NEEDED, (retry.chat_id, cursor, retry.target_seq, retry.user_id, retry.device_id))
    row = cur.fetchone()
    return int(row["needed"]) if row and row["needed"] is not None else 0


def _next_due(cur: Any) -> int | None:
    cur.execute("SELECT (SELECT MIN(due_ts) FROM dlv_checks) AS c, "
                "(SELECT MIN(next_attempt_ts) FROM dlv_retries) AS r")
    row = cur.fetchone()
    found = [int(v) for v in (row["c"], row["r"]) if v is not None] if row else []
    return min(found) if found else None
