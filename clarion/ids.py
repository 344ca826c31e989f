"""Primary keys of the rows Clarion writes per notification (triggers, runs, messages, digest
batches, approvals, events): UUIDs of version 7 (RFC 9562, section 5.7), which begin with their
creation time in milliseconds since the Unix epoch, followed by random bits.

Why not version 4: a random key lands on a random page of every B-tree index it is in (the
primary key's and those of the foreign keys and unique constraints that lead with it, such as
the step log's run, the message's (run, step, channel)), so each write touches a page that is
seldom in memory and, the first time after each checkpoint, writes the whole 8 KiB page to the
WAL (full_page_writes). Measured in bench/README.md: most of the WAL of a notification was
such page images of these indexes. Time-ordered keys go to the right-hand pages of those
indexes, which stay in memory and take many keys per page image.

What a version 7 id tells: when its row was made, to the millisecond. Its other 74 bits are a
counter started at a random value each millisecond and random bits (uuid_utils, from Rust's
`uuid` crate; the lowest 32 bits are random for every id, so `id.int % n` spreads evenly, as
the advance lanes need). Ids are not secrets in Clarion: every endpoint that takes one also
needs an API key or a signed token. Within a process ids increase; across processes they are
ordered by their milliseconds only.
"""

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A new UUID of version 7 (RFC 9562 section 5.7) as the standard library's uuid.UUID: a
    model field's `default` and the ids chosen before their rows are written (a trigger's run
    ids). Raises nothing."""
    return uuid7()
