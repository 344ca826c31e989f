"""What an exception from the database means for the API: unreachable (503, retry shortly) or a
transaction PostgreSQL undid for a conflicting one's sake (written again once, else 503)."""

from django.db import InterfaceError, OperationalError

# PostgreSQL's errors of class 40, "transaction rollback", that the same transaction sent again
# may pass: serialization_failure and deadlock_detected (PostgreSQL's "Errors and Messages"
# appendix; its "Serialization Failure Handling" says to retry them).
TRANSACTION_CONFLICTS = {"40001", "40P01"}


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (refused, down, restarting, the
    connection lost, no pooled connection in time) rather than a bad query. The API answers
    those with a 503 and Retry-After, never a 500."""
    if isinstance(exc, InterfaceError):  # the connection is closed or unusable
        return True
    sqlstate = _sqlstate(exc)
    if sqlstate is False:
        return False
    # psycopg: no SQLSTATE when the connection failed or was lost (and psycopg_pool's
    # PoolTimeout); class 08 is connection exception, 57P01-57P03 are admin shutdown, crash
    # shutdown, cannot connect now.
    return sqlstate is None or sqlstate.startswith("08") or \
        sqlstate in {"57P01", "57P02", "57P03"}


def transaction_conflict(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL undid the transaction because of another one (a deadlock,
    40P01, or a serialization failure, 40001: TRANSACTION_CONFLICTS): nothing of it was
    written, and the same work done again may pass. The API answers those with a 503 and
    Retry-After, never a 500 (a trigger is written again once first)."""
    return _sqlstate(exc) in TRANSACTION_CONFLICTS


def _sqlstate(exc: BaseException) -> str | None | bool:
    """The SQLSTATE of a psycopg error behind Django's OperationalError `exc` (None: psycopg
    gave none); False for any other exception."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if not type(cause).__module__.startswith("psycopg"):
        return False
    return getattr(cause, "sqlstate", None)
