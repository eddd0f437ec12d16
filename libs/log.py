"""Structured JSON logs (structlog) with the service name and a per-task trace id.

The trace id is a contextvar: trio copies context into each task it spawns, so binding it
in a handler task tags every line that task logs. It crosses NATS in the ``Nj-Trace-Id``
header (see :mod:`libs.bus`).
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import secrets
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import orjson
import structlog

if TYPE_CHECKING:
    from .config import CommonConfig

TRACE_HEADER = "Nj-Trace-Id"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event, default=str).decode()


# Applied to every line, ours and those of libraries logging through ``logging``.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def setup(service: str, level: str = "info", log_file: str = "",
          max_bytes: int = 50 * 1024 * 1024, backups: int = 5) -> None:
    """Configure JSON logging once per process: stdout, or a size-rotated file.

    Lines of other libraries (hypercorn, nats, trio-websocket) come out as JSON too, with
    the same service and trace id fields.
    """
    handler: logging.Handler
    if log_file:
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes,
                                                       backupCount=backups)
    else:
        handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _render]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    for noisy in ("hypercorn.error", "hypercorn.access", "trio-websocket", "nats"):
        logging.getLogger(noisy).setLevel(max(_LEVELS[level], logging.WARNING))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def setup_from(common: CommonConfig) -> None:
    """:func:`setup` with a service's common configuration (NJ_LOG_*)."""
    setup(common.service, common.log_level, common.log_file, common.log_max_bytes,
          common.log_backups)


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name)


_TRACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("nj_trace_id", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(8)


def bind_trace(trace_id: str | None) -> str:
    """Tag this task's log lines with ``trace_id`` (a fresh one when None); returns it."""
    trace_id = trace_id or new_trace_id()
    structlog.contextvars.bind_contextvars(trace_id=trace_id)
    _TRACE.set(trace_id)
    return trace_id


def current_trace() -> str | None:
    """The bound trace id; read on every publish, so one contextvar lookup, not structlog's
    copy of the whole context."""
    return _TRACE.get()
