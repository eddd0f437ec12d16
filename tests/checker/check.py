"""The checks: a pure function of the recorded run, the stored events and the expectations.

Categories (see ``CATEGORIES``):

- lost: an acked message that is not stored; or a stored event missing from a device the
  caller expects to be complete although its user was a member at that seq (a device holds
  a seq when it received or fetched the event, or when it sent it and got the ack).
- duplicated: one send stored as two messages (same chat, client_msg_id and sender), one
  message_id at two seqs (stored or acked), two events at one (chat, seq). Repeated
  *deliveries* of a (chat, seq) to a device are allowed and only counted in
  ``Report.redeliveries``.
- out_of_order: after dropping repeated deliveries (the first arrival counts), a device's
  live events of a chat are not in ascending seq order. A device holds its own message
  from its message_ack on (the product says so: the gateway never writes a device its own
  live message, delivery-retry never waits for its ack), so a later delivery of that seq
  (a catch-up from a cursor the device had not acked yet, say after its gateway died) is
  a repeat the client drops (contract: "clients drop duplicates by (chat_id, seq)"), not
  an arrival. The ack itself is not an event and takes no part in the order (it may come
  before lower events, as the contract says).
- gaps: a seq in 1..last of a chat (last: the highest stored or acked seq) that is neither
  stored nor acked (an acked seq that is not stored is already lost).
- unanswered: a send that got neither a message_ack nor an error (counted per send, so two
  sends of one id need two answers).
- mismatch: a stored message that differs from its send (content, type, metadata, sender,
  client id) or sits at another seq than acked; a delivered event that differs from what
  is stored (or sent) at its seq, or that nothing stored or acked explains.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from .history import History, Sends, differences, reference_at
from .model import (
    DUPLICATED,
    GAPS,
    LOST,
    MISMATCH,
    OUT_OF_ORDER,
    UNANSWERED,
    Device,
    Expectations,
    Report,
    StoredEvent,
)
from .recorder import Acked, Received, Recorder, Run


def check(run: Run | Recorder, stored: Iterable[StoredEvent],
          expectations: Expectations | None = None) -> Report:
    """Check one run against the stored events; no I/O."""
    run = run.snapshot() if isinstance(run, Recorder) else run
    expectations = expectations or Expectations()
    stored = list(stored)
    chats = _chats(run, stored, expectations)
    history = History(e for e in stored if e.chat_id in chats)
    sends = Sends(run, chats)
    report = Report(stats={"chats": len(chats), "stored": len(stored), "sends": len(run.sent),
                           "acks": len(run.acked), "deliveries": len(run.received)})
    _check_stored_duplicates(history, report)
    _check_acked_duplicates(sends, report)
    _check_gaps(chats, history, sends, report)
    _check_answers(run, report)
    _check_acked_stored(history, sends, report)
    _check_devices(run, chats, history, sends, expectations, report)
    return report


def _chats(run: Run, stored: list[StoredEvent], expectations: Expectations) -> set[str]:
    if expectations.chats is not None:
        return set(expectations.chats)
    return {e.chat_id for e in stored} | {s.chat_id for s in run.sent}


def _check_stored_duplicates(history: History, report: Report) -> None:
    by_send: dict[tuple, list[StoredEvent]] = defaultdict(list)
    by_id: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in history.messages():
        if event.client_msg_id is not None:
            by_send[(event.chat_id, event.client_msg_id, event.sender_id)].append(event)
        if event.message_id is not None:
            by_id[event.message_id].append(event)
    for (chat, client_id, sender), events in by_send.items():
        if len(events) > 1:
            report.add(DUPLICATED, f"client id {client_id!r} of {sender} stored as "
                       f"{len(events)} messages (seqs {_seqs(events)})", chat)
    for message_id, events in by_id.items():
        if len(events) > 1:
            report.add(DUPLICATED, f"message {message_id} stored at seqs {_seqs(events)}",
                       events[0].chat_id)
    for event in history.extra:
        report.add(DUPLICATED, "a second event stored at this seq", event.chat_id, event.seq)


def _seqs(events: list[StoredEvent]) -> str:
    return ", ".join(str(e.seq) for e in events)


def _check_acked_duplicates(sends: Sends, report: Report) -> None:
    by_send: dict[tuple, set[str]] = defaultdict(set)
    by_id: dict[str, set[int]] = defaultdict(set)
    for ack in sends.acks:
        by_send[(ack.chat_id, ack.id, ack.device.user_id)].add(ack.message_id)
        by_id[ack.message_id].add(ack.seq)
    for (chat, client_id, sender), message_ids in by_send.items():
        if len(message_ids) > 1:
            report.add(DUPLICATED, f"client id {client_id!r} of {sender} acked as "
                       f"{len(message_ids)} messages", chat)
    for message_id, seqs in by_id.items():
        if len(seqs) > 1:
            report.add(DUPLICATED, f"message {message_id} acked at seqs {sorted(seqs)}")


def _check_gaps(chats: set[str], history: History, sends: Sends, report: Report) -> None:
    for chat in sorted(chats):
        held = set(history.seqs.get(chat, [])) | sends.acked_seqs(chat)
        for seq in range(1, max(held, default=0) + 1):
            if seq not in held:
                report.add(GAPS, "no event stored at this seq", chat, seq)


def _check_answers(run: Run, report: Report) -> None:
    answers = Counter((a.device, a.id) for a in run.acked)
    answers.update((f.device, f.id) for f in run.failed)
    for sent in run.sent:
        key = (sent.device, sent.id)
        if answers[key]:
            answers[key] -= 1
        else:
            report.add(UNANSWERED, f"send {sent.id!r} got neither message_ack nor error",
                       sent.chat_id, device=sent.device)


def _check_acked_stored(history: History, sends: Sends, report: Report) -> None:
    stored: dict[str | None, list[StoredEvent]] = defaultdict(list)
    for event in history.messages():
        stored[event.message_id].append(event)
    for ack in sends.messages():
        events = stored.get(ack.message_id, [])
        at_seq = [e for e in events if (e.chat_id, e.seq) == (ack.chat_id, ack.seq)]
        if not events:
            report.add(LOST, f"acked message {ack.message_id} (id {ack.id!r}) is not stored",
                       ack.chat_id, ack.seq, ack.device)
        elif not at_seq:
            report.add(MISMATCH, f"message {ack.message_id} acked at seq {ack.seq}, stored at "
                       f"seq {_seqs(events)}", ack.chat_id, ack.seq, ack.device)
        elif wrong := differences(at_seq[0].body, sends.reference(ack)):
            report.add(MISMATCH, f"stored message differs from its send in {', '.join(wrong)}",
                       ack.chat_id, ack.seq, ack.device)


def _check_devices(run: Run, chats: set[str], history: History, sends: Sends,
                   expectations: Expectations, report: Report) -> None:
    deliveries: dict[Device, list[Received]] = defaultdict(list)
    for item in run.received:
        if item.chat_id in chats:
            deliveries[item.device].append(item)
    acks: dict[Device, list[Acked]] = defaultdict(list)
    for ack in sends.acks:
        acks[ack.device].append(ack)
    complete = set(expectations.complete)
    required_in = _chats_requiring(chats, history, expectations)
    for device in sorted(set(deliveries) | complete):
        seen = _check_deliveries(deliveries[device], acks[device], history, sends, report)
        if device in complete:
            _check_complete(device, required_in[device.user_id], seen, history, sends,
                            expectations, report)


def _chats_requiring(chats: set[str], history: History, expectations: Expectations
                     ) -> dict[str, set[str]]:
    """Per user, the chats with an event the user's devices must hold: each device's check
    reads its own chats, not every chat of the run (10,000 devices × 5,000 chats took minutes)."""
    index: dict[str, set[str]] = defaultdict(set)
    for chat in chats:
        for users in history.required(chat, expectations.members.get(chat)).values():
            for user in users:
                index[user].add(chat)
    return index


def _check_deliveries(items: list[Received], acks: list[Acked], history: History,
                      sends: Sends, report: Report) -> dict[str, set[int]]:
    """Content of every copy, order of first arrivals; returns the seqs held per chat
    (received, or acked before a later delivery of the chat's events)."""
    seen: dict[str, set[int]] = defaultdict(set)
    top: dict[str, int] = defaultdict(int)
    acked = iter(sorted((a for a in acks if a.at), key=lambda a: a.at))  # 0: place not known
    ack = next(acked, None)
    for item in items:
        while ack is not None and ack.at < item.at:
            seen[ack.chat_id].add(ack.seq)
            ack = next(acked, None)
        _check_content(item, history, sends, report)
        if item.seq in seen[item.chat_id]:
            report.redeliveries += 1
            continue
        seen[item.chat_id].add(item.seq)
        if item.live and item.seq < top[item.chat_id]:
            report.add(OUT_OF_ORDER, f"arrived after seq {top[item.chat_id]}", item.chat_id,
                       item.seq, item.device)
        if item.live:
            top[item.chat_id] = max(top[item.chat_id], item.seq)
    return seen


def _check_content(item: Received, history: History, sends: Sends, report: Report) -> None:
    reference = reference_at(history, sends, item.chat_id, item.seq)
    if reference is None:
        # Inside 1..last the missing event is already a gap; above it nothing explains it.
        if item.seq > _last_seq(history, sends, item.chat_id):
            report.add(MISMATCH, "received an event nothing stored or acked explains",
                       item.chat_id, item.seq, item.device)
    elif wrong := differences({**item.frame, "event": item.event}, reference):
        report.add(MISMATCH, f"received {item.event} differs from the stored one in "
                   f"{', '.join(wrong)}", item.chat_id, item.seq, item.device)


def _last_seq(history: History, sends: Sends, chat_id: str) -> int:
    stored = history.seqs.get(chat_id)
    return max(stored[-1] if stored else 0, max(sends.acked_seqs(chat_id), default=0))


def _check_complete(device: Device, chats: set[str], seen: dict[str, set[int]],
                    history: History, sends: Sends, expectations: Expectations,
                    report: Report) -> None:
    for chat in sorted(chats):
        fixed = expectations.members.get(chat)
        held = seen[chat] | sends.held[(device, chat)]
        for seq, users in history.required(chat, fixed).items():
            if device.user_id in users and seq not in held:
                event = history.at[(chat, seq)].event
                report.add(LOST, f"stored {event} never reached this device", chat, seq, device)
