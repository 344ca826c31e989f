"""Database helpers shared by the apps, by concept:

- `errors`: `database_unreachable`, `transaction_conflict` (the API answers 503, not 500);
- `inserts`: rows written many at a time (`rows_copy`, `rows_insert`, `rows_upsert`);
- `params`: statement parameters prepared as Django's fields prepare them (`InsertSelect`);
- `updates`: `rows_update` (one UPDATE from a VALUES list) and `rows_create`;
- `cursors`: `prepared_cursor`, `numbered_cursor`, `numbered_placeholders`, `pipelined_cursor`;
- `instances`: `instance_maker`, `instance_reader`, `model_columns`, `rows_by_pk`.

Import them from here (`from clarion.db import rows_copy`); the modules' private helpers stay
theirs.
"""

from .cursors import numbered_cursor, numbered_placeholders, pipelined_cursor, prepared_cursor
from .errors import database_unreachable, transaction_conflict
from .inserts import rows_copy, rows_insert, rows_upsert
from .instances import instance_maker, instance_reader, model_columns, rows_by_pk
from .params import InsertSelect
from .updates import rows_create, rows_update

__all__ = [
    "InsertSelect",
    "database_unreachable",
    "instance_maker",
    "instance_reader",
    "model_columns",
    "numbered_cursor",
    "numbered_placeholders",
    "pipelined_cursor",
    "prepared_cursor",
    "rows_by_pk",
    "rows_copy",
    "rows_create",
    "rows_insert",
    "rows_update",
    "rows_upsert",
    "transaction_conflict",
]
