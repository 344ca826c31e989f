"""The point of no return of a call to a `commits_late` kind (SMTP: the end of the message's
data), made in a thread of a concurrent batch: the batch writes the call's attempt just before
it, then takes that step itself, in the same thread (calls._perform)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..providers.base import TransientError

NOT_HANDED_OVER = ("The attempt could not be recorded before the message was handed over, so it "
                   "was not handed over.")


class CommitGate:
    """The `before_commit` of a call to a `commits_late` kind made in a thread of a concurrent
    batch. Called in that thread with `hand_over` once everything before the point of no return
    is done (SMTP: the message's data is sent but its end), it wakes the batch's loop (`ready`)
    and waits. The loop `take`s it, writes the call's attempt (the ORM is not used from sending
    threads) and at once calls `hand_over()` itself (`pass_on`: SMTP sends the 5 bytes that end
    the data), in the thread that committed the attempt, so no hand-off to another thread comes
    between the commit and the step (the interpreter may still give the GIL to another thread
    meanwhile: bench/smtp_window.py measures that window whole); then the sending thread goes on
    (reads the server's answer), raising what `hand_over` raised. Not taken within `timeout`
    seconds: TransientError, and the message is not handed over; once taken, the thread waits
    for `pass_on` or `refuse`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float):
        self.ready: asyncio.Future = loop.create_future()
        self._loop, self._timeout = loop, timeout
        self._lock, self._done = threading.Lock(), threading.Event()
        self._state = "waiting"  # then "taken" (by the loop) or "abandoned" (by the thread)
        self._hand_over: Callable[[], None] | None = None
        self._error: BaseException | None = None

    def __call__(self, hand_over: Callable[[], None]) -> None:
        self._hand_over = hand_over
        self._loop.call_soon_threadsafe(_resolve, self.ready)
        if not self._done.wait(self._timeout):
            with self._lock:
                abandoned = self._state == "waiting"
                if abandoned:
                    self._state = "abandoned"
            if abandoned:
                raise TransientError(NOT_HANDED_OVER)
            self._done.wait()  # taken meanwhile: its attempt is being written
        if self._error is not None:
            raise self._error

    @property
    def hand_over(self) -> Callable[[], None] | None:
        """What the sending thread handed (SMTP: providers.smtp_data.EndOfData), once it has."""
        return self._hand_over

    def take(self) -> bool:
        """Called by the loop before it writes the attempt: False when the sending thread has
        stopped waiting (its call ends with a TransientError, nothing handed over)."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "taken"
            return True

    def pass_on(self) -> None:
        """Once the attempt is committed: take the step that hands the message over, in this
        thread, and let the sending thread go on."""
        try:
            self._hand_over()
        except Exception as exc:  # raised in the sending thread, which closes its call
            self._error = exc
        finally:
            self._done.set()

    def refuse(self) -> None:
        """The attempt could not be written: the sending thread raises TransientError, and the
        message is not handed over."""
        self._error = TransientError(NOT_HANDED_OVER)
        self._done.set()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
