"""Cursors for the hot statements: server-side binding (prepared after a few executions),
numbered placeholders ($1, not parsed from %s), and psycopg's pipeline mode."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger(__name__)


def prepared_cursor(using: str = DEFAULT_DB_ALIAS):
    """A cursor (Django's wrapper: execute_wrapper and query capture see its statements) whose
    statements PostgreSQL keeps prepared: parameters bound by the server rather than quoted
    into the text in Python, and a statement run `prepare_threshold` times on a connection
    (the database OPTIONS, set by DB_PREPARED_STATEMENTS) parsed and planned once, then
    executed by name (psycopg's prepared statements). For the few statements a hot path runs
    with the same SQL text again and again. Elsewhere, or without `prepare_threshold`, the
    connection's own cursor.

    A statement prepared before a migration changed the type of a column it returns fails
    ("cached plan must not change result type", SQLSTATE 0A000). Outside a transaction the
    cursor's execute then runs it once more, after the connection's prepared statements are
    forgotten (DEALLOCATE ALL; psycopg forgets its own with them): it works from then on.
    Inside one the error is raised (the transaction is aborted); its rollback, to a savepoint
    too, makes psycopg forget them, so the next transaction's statement works."""
    connection = connections[using]
    if (connection.vendor != "postgresql"
            or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None):
        return connection.cursor()
    global _prepared_cursor_class
    if _prepared_cursor_class is None:
        from django.db.backends.postgresql.base import ServerBindingCursor

        _prepared_cursor_class = type("PreparedCursor", (_Replanned, ServerBindingCursor), {})
    return _wrapped_cursor(connection, _prepared_cursor_class)


class _Replanned:
    """A psycopg cursor whose execute, outside a transaction, runs a statement that failed as
    prepared before a column it returns changed type once more, with nothing prepared on the
    connection (prepared_cursor)."""

    def execute(self, query, params=None, **kwargs):
        try:
            return super().execute(query, params, **kwargs)
        except Exception as error:
            if not _replannable(error, self.connection):
                raise
        logger.info("A statement prepared before its result type changed (a migration) is run "
                    "again with nothing prepared on its connection")
        super().execute("DEALLOCATE ALL")
        return super().execute(query, params, **kwargs)


def _replannable(error: Exception, connection) -> bool:
    """Whether `error` is PostgreSQL refusing a prepared statement whose result type changed
    (RevalidateCachedQuery's "cached plan must not change result type", told by its SQLSTATE
    and source function, not its message, which lc_messages may translate) on `connection`
    outside a transaction and outside a pipeline: nothing to lose by running it again."""
    from psycopg import pq

    diag = getattr(error, "diag", None)
    return (getattr(error, "sqlstate", None) == "0A000" and diag is not None
            and diag.source_function == "RevalidateCachedQuery"
            and connection.info.transaction_status == pq.TransactionStatus.IDLE
            and connection.info.pipeline_status == pq.PipelineStatus.OFF)


_prepared_cursor_class = None  # Django's server-binding psycopg cursor with _Replanned


def _wrapped_cursor(connection, cursor_class):
    """A psycopg cursor of `cursor_class` on `connection`, opened as Django opens its own (a
    failed health check closes the connection first) and in Django's wrapper."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(cursor_class(connection.connection))


def numbered_cursor(using: str = DEFAULT_DB_ALIAS):
    """A PostgreSQL cursor (Django's wrapper) for statements written with numbered placeholders
    (`$1`, `$2` …; numbered_placeholders), bound by the server and prepared as prepared_cursor
    says (without `prepare_threshold`, bound but never prepared, as PgBouncer in transaction
    mode needs). For a long statement run again and again: psycopg converts `%s` to `$n` by
    parsing the text on every execute once a statement is over 4,096 characters or 50
    parameters (its cache's bounds), ~0.3 ms of CPU for a trigger's one statement. After a
    column's type change, as prepared_cursor."""
    global _numbered_cursor_class
    if _numbered_cursor_class is None:
        import psycopg
        from django.db.backends.postgresql.base import CursorMixin

        _numbered_cursor_class = type("NumberedCursor",
                                      (_Replanned, CursorMixin, psycopg.RawCursor), {})
    return _wrapped_cursor(connections[using], _numbered_cursor_class)


_numbered_cursor_class = None  # Django's psycopg cursor with psycopg's RawCursor (no %s)


def numbered_placeholders(sql: str) -> str:
    """`sql` with each `%s` numbered in order (`$1`, `$2` …), for numbered_cursor; `%%` is
    read as a literal `%`."""
    parts, number = sql.split("%%"), 0
    for index, part in enumerate(parts):
        pieces = part.split("%s")
        for piece in range(1, len(pieces)):
            number += 1
            pieces[piece] = f"${number}{pieces[piece]}"
        parts[index] = "".join(pieces)
    return "%".join(parts)


@contextmanager
def pipelined_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator:
    """prepared_cursor in psycopg's pipeline mode: its statements, and the BEGIN that psycopg
    sends on its own before a transaction's first statement, reach PostgreSQL together, one
    round trip instead of two. A result is read at its first fetch (which waits for it) or at
    the block's end; errors are raised then too (as Django's exceptions)."""
    connection = connections[using]
    with prepared_cursor(using) as cursor:
        if connection.vendor != "postgresql":
            yield cursor
            return
        with connection.wrap_database_errors, connection.connection.pipeline():
            yield cursor
