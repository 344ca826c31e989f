"""bench/common.py's CpuMeter, given a database, counts PostgreSQL's backends of that database
and the server's own processes, not the backends of other databases on the same server (a test
suite's, run beside a benchmark)."""

import psycopg
import pytest
from django.db import connection

from bench.common import CpuMeter, postgres_database

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


def backend_pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.django_db
def test_a_backend_is_known_by_its_database_and_the_server_by_none():
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        mine = cursor.fetchone()[0]
    assert postgres_database(mine) == name
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as other:
        assert postgres_database(backend_pid(other)) == "postgres"
        busy_other = backend_pid(other)
        meter = CpuMeter({}, database=name)
        pids = {pid for (label, pid) in meter._sample() if label == "PostgreSQL"}
        assert mine in pids
        assert busy_other not in pids
        everyone = {pid for (label, pid) in CpuMeter({})._sample() if label == "PostgreSQL"}
        assert {mine, busy_other} <= everyone
    # The server's own processes have no database: counted with any.
    servers = [pid for pid in everyone if postgres_database(pid) is None]
    assert servers and set(servers) <= pids
