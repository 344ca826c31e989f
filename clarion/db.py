"""Database helpers shared by the apps."""

from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction


@contextmanager
def relaxed_commit(using: str = DEFAULT_DB_ALIAS):
    """A transaction whose COMMIT does not wait for PostgreSQL to flush it to disk
    (`SET LOCAL synchronous_commit TO OFF`, this transaction only).

    For small writes whose loss in a server crash is harmless and that a durable commit soon
    follows: an Idempotency-Key claim (the trigger right after it commits durably, and that
    flush writes the claim too, as the WAL is flushed in order; a crash before it loses both,
    and the retried request claims the key again). Other sessions see the commit at once, as
    always. PostgreSQL docs, "Asynchronous Commit".

    Inside a transaction already, or on another database, it is a plain `atomic()` (the setting
    would apply to the whole outer transaction). Yields nothing; raises what the block raises.
    """
    connection = connections[using]
    relax = connection.vendor == "postgresql" and transaction.get_autocommit(using)
    with transaction.atomic(using=using):
        if relax:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (refused, down, restarting, the
    connection lost, no pooled connection in time) rather than a bad query. The API answers
    those with a 503 and Retry-After, never a 500."""
    if isinstance(exc, InterfaceError):  # the connection is closed or unusable
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if not type(cause).__module__.startswith("psycopg"):
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    # psycopg: no SQLSTATE when the connection failed or was lost (and psycopg_pool's
    # PoolTimeout); class 08 is connection exception, 57P01-57P03 are admin shutdown, crash
    # shutdown, cannot connect now.
    return sqlstate is None or sqlstate.startswith("08") or \
        sqlstate in {"57P01", "57P02", "57P03"}
