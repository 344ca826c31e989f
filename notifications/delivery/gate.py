"""The point of no return of a call to a `commits_late` kind (SMTP's DATA), made in a thread of a
concurrent batch: the batch writes the call's attempt just before it (batch._perform)."""

from __future__ import annotations

import asyncio
import threading

from ..providers.base import TransientError


class CommitGate:
    """The `before_commit` of a call to a `commits_late` kind made in a thread of a concurrent
    batch: called in that thread just before the message is handed over (SMTP: DATA), it wakes
    the batch's loop (`ready`), which writes the call's attempt (the ORM is not used inside the
    loop nor from sending threads) and then `release`s it. Not released within `timeout`
    seconds: TransientError, and the message is not handed over."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float):
        self.ready: asyncio.Future = loop.create_future()
        self._loop, self._timeout, self._open = loop, timeout, threading.Event()

    def __call__(self) -> None:
        self._loop.call_soon_threadsafe(_resolve, self.ready)
        if not self._open.wait(self._timeout):
            raise TransientError("The attempt could not be recorded before the message was "
                                 "handed over, so it was not handed over.")

    def release(self) -> None:
        self._open.set()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
