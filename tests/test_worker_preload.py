"""A qcluster's workers start with the URLconf and the task modules loaded
(clarion/worker_preload.py): the first task of each worker no longer imports and compiles them.

A real `qcluster` runs tests/preload_probe.py's task, which writes down what its worker had
loaded when the task began (before this change: none of it, the resolver's tables unbuilt)."""

import json

import pytest

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
