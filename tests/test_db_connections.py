"""Which database connections each kind of process keeps (clarion/settings.py, clarion/asgi.py).

Each case is a fresh interpreter, as the real process is: the settings are read once, at start.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/clarion_unused"


def database_settings(*, argv=None, env=None, code=""):
    """DATABASES["default"] (plus `code`'s output) of a new process with `env` and `sys.argv`."""
    script = (f"import sys; sys.argv = {argv or ['manage.py', 'shell']!r}\n"
              "import json, django; from django.conf import settings\n"
              "django.setup(); d = settings.DATABASES['default']\n"
              "print(json.dumps({'max_age': d['CONN_MAX_AGE'], 'health': d['CONN_HEALTH_CHECKS'],"
              " 'pool': d.get('OPTIONS', {}).get('pool')}))\n" + code)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("CONN_MAX_AGE", "DB_POOL", "CLARION_PROCESS")}
    environment.update(DJANGO_SETTINGS_MODULE="clarion.settings", **(env or {}))
    environment = {key: value for key, value in environment.items() if value is not None}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_a_web_process_on_postgresql_borrows_from_a_pool():
    [web] = database_settings(env={"DATABASE_URL": PG, "CLARION_PROCESS": "web"})
    assert web == {"max_age": 0, "health": True,
                   "pool": {"min_size": 2, "max_size": 20, "timeout": 5,
                            "reconnect_timeout": 5.0}}


def test_loading_the_asgi_application_marks_the_process_as_web():
    # What daphne, uvicorn and granian do: import clarion.asgi before anything loads settings.
    environment = {k: v for k, v in os.environ.items() if k != "CLARION_PROCESS"}
    environment.update(DATABASE_URL=PG, DJANGO_SETTINGS_MODULE="clarion.settings")
    out = subprocess.run(
        [sys.executable, "-c", "import json, clarion.asgi; from django.conf import settings; "
         "print(json.dumps(settings.DATABASES['default']['OPTIONS'].get('pool')))"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["max_size"] == 20


def test_a_worker_keeps_its_connection_between_tasks_and_borrows_from_no_pool():
    [worker] = database_settings(argv=["manage.py", "qcluster"],
                                 env={"DATABASE_URL": PG, "CLARION_PROCESS": "web"})
    assert worker == {"max_age": 60, "health": True, "pool": None}
    [explicit] = database_settings(argv=["manage.py", "qcluster"],
                                   env={"DATABASE_URL": PG, "CONN_MAX_AGE": "0"})
    assert explicit["max_age"] == 0


def test_other_commands_and_sqlite_open_a_connection_per_use():
    [command] = database_settings(env={"DATABASE_URL": PG})
    assert command == {"max_age": 0, "health": True, "pool": None}
    [sqlite] = database_settings(env={"CLARION_PROCESS": "web", "DATABASE_URL": None})
    assert sqlite["pool"] is None


def test_an_explicit_conn_max_age_or_db_pool_off_turns_the_pool_off():
    [aged] = database_settings(env={"DATABASE_URL": PG, "CLARION_PROCESS": "web",
                                    "CONN_MAX_AGE": "30"})
    assert aged == {"max_age": 30, "health": True, "pool": None}
    [off] = database_settings(env={"DATABASE_URL": PG, "CLARION_PROCESS": "web",
                                   "DB_POOL": "off"})
    assert off["pool"] is None


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""),
                    reason="the pool is PostgreSQL's (psycopg_pool)")
def test_pooled_requests_on_many_threads_reuse_a_few_server_connections():
    # 8 threads x 10 "requests" (query, then request_finished closes the connection): the pool
    # hands the same few PostgreSQL backends around instead of opening 80.
    code = """
import threading
from django.core.signals import request_finished
from django.db import connection
pids, errors = [], []
def requests():
    try:
        for _ in range(10):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
            request_finished.send(sender=None)
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=requests) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"requests": len(pids), "backends": len(set(pids)), "errors": errors}))
"""
    _, used = database_settings(env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                     "CLARION_PROCESS": "web", "DB_POOL_MAX_SIZE": "4"},
                                code=code)
    assert used["errors"] == [] and used["requests"] == 80
    assert 1 <= used["backends"] <= 4
