"""History checker: did every message arrive, once, in order, as sent?

Feed a ``Recorder`` while a run goes on (what each device sent, which sends were acked or
failed, every frame each device read), load what MySQL holds with ``load_stored`` /
``fetch_stored`` / ``wait_stored``, then ``check(recorder, stored, Expectations(...))``.
The ``Report`` lists faults in six categories (lost, duplicated, out_of_order, gaps,
unanswered, mismatch; ``check`` explains each), counts redeliveries, and has ``summary()``
and ``assert_ok()``.

    recorder = Recorder()
    recorder.sent(device, frame)           # every send_message written
    recorder.observe(device, frame)        # every frame read (acks, errors, events)
    stored = await wait_stored(mysql_config, {chat_id: last_seq})
    check(recorder, stored, Expectations(complete=devices)).assert_ok()
"""

from .check import check
from .model import (
                    CATEGORIES,
                    DUPLICATED,
                    GAPS,
                    LOST,
                    MISMATCH,
                    OUT_OF_ORDER,
                    UNANSWERED,
                    Device,
                    Expectations,
                    Fault,
                    Report,
                    StoredEvent,
)
from .mysql import fetch_stored, load_stored, wait_stored
from .recorder import Acked, Failed, Received, Recorder, Run, Sent

__all__ = [
    "CATEGORIES", "DUPLICATED", "GAPS", "LOST", "MISMATCH", "OUT_OF_ORDER", "UNANSWERED",
    "Acked", "Device", "Expectations", "Failed", "Fault", "Received", "Recorder", "Report",
    "Run", "Sent", "StoredEvent", "check", "fetch_stored", "load_stored", "wait_stored",
]
