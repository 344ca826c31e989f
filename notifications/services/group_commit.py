"""Group commit of a web process's concurrent triggers: the triggers whose requests reach their
write while another of the process's trigger statements is in flight are written together, by
one statement (services/trigger_batch.py), one implicit transaction and one commit, as
PostgreSQL's own group commit shares a WAL flush. There is no delay: a trigger that finds no
statement in flight is written at once, alone, as before (trigger_statement.py); those that
arrive meanwhile wait for it, then the first of them writes them all (up to
CLARION["TRIGGER_GROUP_COMMIT"] a statement, the rest in the next one) while newer arrivals
gather for the statement after.

What each trigger keeps (trigger_batch.py gates every part per trigger):
- its own answer: a taken key replays and writes nothing, a changed workflow raises
  WorkflowChanged for it alone, and the others are written;
- two requests with the same (API key, Idempotency-Key) never share a statement (the later
  one waits for the next, which sees the first's record), nor do two with a recipient in
  common (an upsert touches a row once a statement);
- if the batch's statement fails for any reason (a deadlock, a foreign key at the commit, a
  bug), nothing of it is committed and each of its triggers is written again on its own, by
  its own request, so one bad trigger fails only itself (an error after the commit, the
  connection lost while the answer is read, leaves each key taken: written again alone, each
  trigger replays its committed answer);
- a trigger is answered only after the statement that wrote it committed: a process killed
  meanwhile has answered none of them.

A statement blocked on a lock (a recipient's row or a key held by another transaction, e.g. a
schedule's occurrence writing its triggers in one) holds up only the triggers it writes, and
those briefly: a trigger queued for longer than WAIT_SECONDS leaves the queue and is written on
its own (the statement in flight may be one trigger's, which waits for its lock as long as it
takes, as without group commit), and a statement of several triggers gives up a lock it waited
LOCK_WAIT_SECONDS for (`lock_timeout`, trigger_batch.py), so that each of its triggers is written
again on its own and only the one that needs the lock waits for it.

Only the REST trigger's common case takes part (an idempotency key and the process's kept
workflow, outside any transaction; services.trigger_workflow_idempotent); the others, and
everything with CLARION["TRIGGER_GROUP_COMMIT"] below 2, are written as before.
"""

import logging
import os
import threading

from django.conf import settings
from django.db import connection

from .trigger_batch import TriggerRows, triggers_rows_write
from .trigger_statement import trigger_rows_write

logger = logging.getLogger(__name__)

# How long a trigger waits in the queue for a statement to take it, and a statement of several
# triggers for a lock (`lock_timeout`), before each is written on its own (module docstring).
# Under load a statement in flight takes a few milliseconds.
WAIT_SECONDS = 0.1
LOCK_WAIT_SECONDS = 0.1

# The errors a statement of several triggers may meet in normal operation (its triggers are then
# written again alone, logged at INFO): a lock waited for past LOCK_WAIT_SECONDS, a deadlock with
# another process's statement. Any other failure is logged as a warning: a batch path that
# always fails costs every trigger a second statement.
_EXPECTED = {"55P03", "40P01"}  # lock_not_available, deadlock_detected


def group_commit_size() -> int:
    """The most triggers one statement writes (CLARION["TRIGGER_GROUP_COMMIT"]); below 2,
    group commit is off."""
    return settings.CLARION["TRIGGER_GROUP_COMMIT"]


def group_commit_applies() -> bool:
    """Whether a trigger written now may share a statement: group commit on, PostgreSQL,
    outside any transaction (a caller's transaction is its own)."""
    return (group_commit_size() >= 2 and connection.vendor == "postgresql"
            and not connection.in_atomic_block)


class _Waiting:
    """A trigger waiting for its statement: `ready` is set when it is to write `batch` (its
    own and the next ones) or when its answer is known (`answer`, `error`, or `alone`: write
    it on its own)."""

    __slots__ = ("rows", "ready", "batch", "answer", "error", "alone")

    def __init__(self, rows: TriggerRows):
        self.rows, self.ready = rows, threading.Event()
        self.batch: list[_Waiting] | None = None
        self.answer, self.error, self.alone = None, None, False


class GroupCommit:
    """One process's triggers in flight (module docstring): at most one statement of them at a
    time, the triggers that come meanwhile queued for the next."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queued: list[_Waiting] = []
        self._busy = False
        # statements of several triggers written, the triggers in them, and statements failed
        # (their triggers written again alone): for tests and benches
        self.statements = self.written = self.failed = 0

    def write(self, rows: TriggerRows) -> tuple:
        """trigger_statement.trigger_rows_write's answer for `rows`, written alone or with
        other triggers of this process. Raises what writing it alone raises."""
        waiting = _Waiting(rows)
        with self._lock:
            leads = not self._busy
            if leads:
                self._busy = True
                waiting.batch = [waiting]
            else:
                self._queued.append(waiting)
        if not leads and not waiting.ready.wait(WAIT_SECONDS):
            with self._lock:  # still queued: written alone; taken by a batch: its answer
                if waiting in self._queued:
                    self._queued.remove(waiting)
                    waiting.alone = True
            if not waiting.alone:
                waiting.ready.wait()
        if waiting.batch is not None:
            try:
                self._write(waiting.batch)
            finally:
                self._hand_over()
        if waiting.alone:
            return _alone(rows)
        if waiting.error is not None:
            raise waiting.error
        return waiting.answer

    def _write(self, batch: list[_Waiting]) -> None:
        """Write `batch` (its first the caller's own) and give each of the others its answer."""
        try:
            if len(batch) == 1:
                try:
                    batch[0].answer = _alone(batch[0].rows)
                except Exception as error:  # the caller's own: raised to it
                    batch[0].error = error
                return
            try:
                answers = triggers_rows_write([waiting.rows for waiting in batch],
                                              lock_timeout=LOCK_WAIT_SECONDS)
            except Exception as error:
                expected = (getattr(error, "sqlstate", None)
                            or getattr(error.__cause__, "sqlstate", None))
                logger.log(logging.INFO if expected in _EXPECTED else logging.WARNING,
                           "A statement of %d triggers failed; each is written on its own",
                           len(batch), exc_info=True)
                self.failed += 1
                for waiting in batch:
                    waiting.alone = True
                return
            for waiting, answer in zip(batch, answers, strict=True):
                waiting.answer = answer
            self.statements += 1
            self.written += len(batch)
        finally:
            for waiting in batch[1:]:
                if waiting.answer is None:
                    waiting.alone = True
                waiting.ready.set()

    def _hand_over(self) -> None:
        """The next batch to the first queued trigger, which writes it; or nothing in flight."""
        with self._lock:
            try:
                batch = self._next_batch()
            except Exception:  # a bug: nothing may stay queued behind it, nor the process busy
                logger.exception("Group commit could not form a statement; the queued "
                                 "triggers are written on their own")
                batch, queued, self._queued = [], self._queued, []
                for waiting in queued:
                    waiting.alone = True
                    waiting.ready.set()
            if not batch:
                self._busy = False
                return
        batch[0].batch = batch
        batch[0].ready.set()

    def _next_batch(self) -> list[_Waiting]:
        """The queued triggers of the next statement, in their order: the first one, then those
        of its shape with neither its key nor a recipient of the batch's, up to the size; the
        others stay queued."""
        if not self._queued:
            return []
        size, first = group_commit_size(), self._queued[0]
        batch, keys, recipients = [first], {first.rows.key()}, first.rows.external_ids()
        shape, rest = first.rows.shape(), []
        for waiting in self._queued[1:]:
            if len(batch) < size and waiting.rows.shape() == shape:
                key, ids = waiting.rows.key(), waiting.rows.external_ids()
                if key not in keys and recipients.isdisjoint(ids):
                    batch.append(waiting)
                    keys.add(key)
                    recipients |= ids
                    continue
            rest.append(waiting)
        self._queued = rest
        return batch


def _alone(rows: TriggerRows) -> tuple:
    return trigger_rows_write(
        record=rows.record, recipients=rows.recipients, update_fields=rows.update_fields,
        groups=rows.groups, run_recipients=rows.run_recipients, tasks=rows.tasks,
        task_lanes=rows.task_lanes, now=rows.now, workflow=rows.workflow)


group_commit = GroupCommit()  # the process's
os.register_at_fork(after_in_child=group_commit.__init__)  # a child has none in flight


def trigger_rows_write_grouped(rows: TriggerRows) -> tuple:
    """trigger_rows_write for `rows`, with the process's other triggers in flight when
    group_commit_applies (the caller checks)."""
    return group_commit.write(rows)
