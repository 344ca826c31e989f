"""LOG_FORMAT=json: each log line is one JSON object carrying the ids the code works on."""

import io
import json
import logging
import subprocess
import sys

import pytest

from clarion.logs import log_context
from notifications import tasks


@pytest.fixture
def json_logs(settings):
    """A handler built as the project's LOGGING builds it for LOG_FORMAT=json (its formatter
    and its ids filter), on the root logger at INFO; returns a function giving the JSON objects
    written so far."""
    from pythonjsonlogger.json import JsonFormatter

    from clarion.logs import ContextFilter

    config = dict(settings.LOGGING["formatters"]["json"])
    config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**config))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_log_line_is_json_with_the_bound_ids(json_logs):
    with log_context(trigger_id="t-1", run_id="r-2"), log_context(message_id="m-3"):
        logging.getLogger("notifications.delivery").warning("provider %s raised", "postmark")
    [line] = json_logs()
    assert line["message"] == "provider postmark raised"
    assert (line["trigger_id"], line["run_id"], line["message_id"]) == ("t-1", "r-2", "m-3")
    assert line["level"] == "WARNING" and line["logger"] == "notifications.delivery"


def test_the_trigger_view_logs_the_trigger_id(json_logs, api, make_workflow):
    from ..conftest import email_step

    make_workflow("welcome", steps=[email_step()])
    answer = api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["u-1"]})
    assert answer.status_code in (200, 201, 202), answer.content
    lines = [line for line in json_logs() if line.get("logger") == "notifications.api.views"]
    assert lines[-1]["trigger_id"] == answer.json()["trigger_id"]


def test_advance_run_binds_the_run_id(json_logs, api, make_workflow, monkeypatch):
    from ..conftest import email_step

    make_workflow("welcome", steps=[email_step()])
    answer = api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["u-1"]})
    run_id = answer.json()["runs"][0]["id"]
    monkeypatch.setattr(tasks.engine, "advance",
                        lambda run, now: logging.getLogger("notifications.engine").info("step"))
    tasks.advance_run(run_id)
    [line] = [line for line in json_logs() if line["message"] == "step"]
    assert line["run_id"] == run_id


def test_log_format_json_is_the_switch():
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('clarion').warning('hello')")
    env_json = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "clarion.settings",
             "LOG_FORMAT": "json"})
    assert json.loads(env_json.stderr.strip().splitlines()[-1])["message"] == "hello"
    bad = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "clarion.settings",
             "LOG_FORMAT": "yaml"})
    assert bad.returncode != 0 and "LOG_FORMAT" in bad.stderr
