"""Structured logging: the ids of what is being worked on ride along on every log record.

`log_context(trigger_id=…, run_id=…, message_id=…)` binds ids for the code it wraps (a
contextvar, so it follows asyncio tasks and never leaks between threads); `ContextFilter`
copies them onto each record as attributes. With `LOG_FORMAT=json` (clarion/settings.py) the
records are written as one JSON object per line by python-json-logger, those ids included;
otherwise as plain text.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

# The ids a record can carry.
ID_FIELDS = ("trigger_id", "run_id", "message_id")

_bound: ContextVar[dict[str, str]] = ContextVar("clarion_log_ids", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**ids) -> Iterator[None]:
    """Bind ids (`trigger_id`, `run_id`, `message_id`: anything with a str()) to every log
    record written inside the block, on top of the ids already bound. None values are
    skipped."""
    unknown = set(ids) - set(ID_FIELDS)
    if unknown:
        raise TypeError(f"log_context takes {', '.join(ID_FIELDS)}, not {', '.join(unknown)}")
    token = _bound.set({**_bound.get(), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bind(**ids) -> None:
    """Bind ids for the rest of the current context (a request, a task): for a view that learns
    the trigger's id part-way."""
    _bound.set({**_bound.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Adds the bound ids to each record (an `extra=` the caller gave wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
