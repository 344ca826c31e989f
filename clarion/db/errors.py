"""Whether an exception means the database cannot be reached (the API answers 503 then)."""


from django.db import InterfaceError, OperationalError


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
