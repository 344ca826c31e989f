"""A qcluster's workers start with the URLconf and the task modules loaded
(clarion/worker_preload.py): the first task of each worker no longer imports and compiles them.

A real `qcluster` runs tests/preload_probe.py's task, which writes down what its worker had
loaded when the task began. Without the preload, the task modules are not imported and the
resolver's tables not built (the URLconf and boto3 are: qcluster's system checks import them)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from clarion import worker_preload
from notifications.queue import enqueue
from tests.notifications.providers.test_kill_run import wait
from tests.processes import Cluster


@pytest.mark.django_db(transaction=True)
def test_a_clusters_workers_start_with_the_urlconf_and_the_tasks_loaded(tmp_path):
    cluster = Cluster(tmp_path / "qcluster.log", workers=2)
    try:
        wait(lambda: len(cluster.workers()) == 2, "two workers ready")
        paths = [tmp_path / f"loaded-{n}.json" for n in range(2)]
        for path in paths:
            enqueue("tests.preload_probe.note_loaded", str(path))
        wait(lambda: all(path.exists() and path.stat().st_size for path in paths),
             "the tasks to run", timeout=60)
        for path in paths:
            assert json.loads(path.read_text()) == {
                "urlconf": True, "tasks": True, "boto3": True, "reverse_tables": True}
    finally:
        cluster.stop()


def test_a_stop_signal_while_preloading_acts_after_the_preload_not_inside_it():
    """django-q2's stop handler, run inside preload(), would fail there and be logged as a failed
    preload, the stop lost; held back, it runs once the preload is done. In a process of its
    own: signals are held for the main thread, where qcluster starts its cluster (a test worker
    of pytest-xdist may run tests in another thread)."""
    program = textwrap.dedent("""
        import os, signal, django
        django.setup()
        from clarion import worker_preload
        order = []
        def preload():
            os.kill(os.getpid(), signal.SIGTERM)
            order.append("preloaded")
        worker_preload.preload = preload
        signal.signal(signal.SIGTERM, lambda *_: order.append("stop handler"))
        worker_preload.preload_holding_stop_signals()
        held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        print(order, held)
    """)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clarion.settings"}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['preloaded', 'stop handler'] False"


@pytest.mark.django_db(transaction=True)
def test_a_preload_that_fails_is_logged_and_leaves_no_database_connection(monkeypatch, caplog):
    from django.db import connection

    monkeypatch.setattr(worker_preload, "TASK_MODULES", ("notifications.no_such_module",))
    connection.ensure_connection()
    worker_preload.preload()
    assert "preloading the workers' modules failed" in caplog.text
    assert connection.connection is None
