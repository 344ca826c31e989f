"""Running the real product for end-to-end tests: `python manage.py serve` as a subprocess.

`ServeLauncher` starts `manage.py serve` exactly as `make serve` does (it migrates, seeds the demo,
then runs daphne and a qcluster as its own children) against the pytest-django test database, so
the test process and the served product see the same rows. Each server runs in its own process
group: stopping sends SIGINT to `serve` alone (it must stop its children), then kills whatever is
left of the group, so no daphne or qcluster ever outlives a test.
"""

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

from .conftest import free_port

# Variables that would take the served product out of its embedded mode or away from the test
# database and SMTP server; the launcher sets the ones the test needs.
# PYTEST_XDIST_WORKER too: a started process is no test worker, and would move the REDIS_URL
# it is given to its worker's Redis database (clarion/settings.py).
_STRIPPED_VARIABLES = {"DATABASE_URL", "REDIS_URL", "QUEUE_BROKER", "DEFAULT_FROM_EMAIL", "PORT",
                       "HOST", "PUBLIC_URL", "ALLOWED_HOSTS", "STATIC_ROOT", "SECRET_KEY",
                       "PYTEST_XDIST_WORKER"}
_STRIPPED_PREFIXES = ("EMAIL_", "ANYMAIL_", "CLARION_")


def served_database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created, which other processes can open.

    Call it inside a `transaction=True` test: rows the test writes are committed, and rows the
    served product writes are visible to the test.
    """
    conf = connection.settings_dict
    engine, name = conf["ENGINE"], str(conf["NAME"] or "")
    if engine == "django.db.backends.sqlite3":
        if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            raise RuntimeError(f"the SQLite test database is in memory ({name!r}): another "
                               "process cannot open it; set DATABASES TEST NAME to a file")
        path = Path(name).resolve()
        if not path.is_file():
            raise RuntimeError(f"the SQLite test database {path} is not a file")
        return f"sqlite:///{path}"
    if engine in ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"):
        quote = urllib.parse.quote
        credentials = quote(conf.get("USER") or "", safe="")
        if conf.get("PASSWORD"):
            credentials += ":" + quote(conf["PASSWORD"], safe="")
        netloc = quote(conf.get("HOST") or "", safe="")
        if conf.get("PORT"):
            netloc += f":{conf['PORT']}"
        if credentials:
            netloc = f"{credentials}@{netloc}"
        options = {key: value for key, value in (conf.get("OPTIONS") or {}).items()
                   if isinstance(value, str | int)}
        query = f"?{urllib.parse.urlencode(options)}" if options else ""
        return f"postgres://{netloc}/{quote(name, safe='')}{query}"
    raise RuntimeError(f"no DATABASE_URL scheme for the {engine} engine")


class HttpResult:
    def __init__(self, status: int, headers, body: bytes, url: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.url}: {self.body[:500]!r}>"


class ClarionServer:
    """One `manage.py serve` process (and its process group), its port and its output."""

    def __init__(self, *, env: dict[str, str], var_dir: Path, log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.var_dir = var_dir
        self.log_path = log_path
        self._log_file = open(log_path, "wb")  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "serve",
             "--port", str(self.port)],
            cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches every child
        )
        self.pgid = self.process.pid
        self.exit_code: int | None = None
        self.survivors: list[str] = []
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------

    def wait_until_ready(self, timeout: float = 60) -> None:
        """Until the HTTP port answers (any HTTP status is an answer)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode} before "
                                     f"answering on port {self.port}")
            try:
                urllib.request.urlopen(f"{self.base_url}/admin/login/", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer on port {self.port} "
                                     f"within {timeout}s")
            time.sleep(0.2)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGINT to `serve` (it stops daphne and the qcluster), then kill whatever is left.

        Returns serve's exit code, or None when it did not exit within `timeout` after SIGINT.
        `survivors` lists the processes of its group still alive after it exited. Idempotent.
        """
        if self._stopped:
            return self.exit_code
        self._stopped = True
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout)
            self.exit_code = self.process.poll()
            # Children exit before serve does; give stragglers a moment, then name them.
            deadline = time.monotonic() + 5
            while (survivors := _group_members(self.pgid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.survivors = survivors
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
            if self.process.poll() is None:
                self.process.wait()
            self._log_file.close()
        return self.exit_code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def credentials(self) -> dict:
        """What serve wrote to demo-credentials.json: admin_username, admin_password, api_key."""
        return json.loads((self.var_dir / "demo-credentials.json").read_text())

    # --- HTTP -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, *, api_key: str | None = None,
                headers: dict | None = None, timeout: float = 10) -> HttpResult:
        """One real HTTP request; 4xx and 5xx are returned, not raised."""
        headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return HttpResult(response.status, response.headers, response.read(),
                                  response.url)
        except urllib.error.HTTPError as error:
            with error:
                return HttpResult(error.code, error.headers, error.read(), error.url)

    def admin_login(self, username: str, password: str) -> bool:
        """Log in to the admin through its login form, as a browser does."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with opener.open(f"{self.base_url}/admin/login/?next=/admin/", timeout=10) as page:
            html = page.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        if token is None:
            raise AssertionError("the admin login page has no CSRF token")
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1),
                                       "username": username, "password": password,
                                       "next": "/admin/"}).encode()
        # A successful login redirects to /admin/; a failed one shows the form again.
        with opener.open(f"{self.base_url}/admin/login/?next=/admin/", data=form,
                         timeout=10) as page:
            return urllib.parse.urlsplit(page.url).path == "/admin/" and page.status == 200


class ServeLauncher:
    """Starts `serve` processes for one test against the test database; stops them all."""

    def __init__(self, *, database_url: str, var_dir: Path, smtp_port: int, log_dir: Path):
        self.var_dir = var_dir
        self.log_dir = log_dir
        self.servers: list[ClarionServer] = []
        env = {name: value for name, value in os.environ.items()
               if name not in _STRIPPED_VARIABLES and not name.startswith(_STRIPPED_PREFIXES)}
        env.update(
            DATABASE_URL=database_url,
            CLARION_VAR_DIR=str(var_dir),
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp_port),
            SECRET_KEY="clarion-e2e-tests-secret-key-not-for-production",
            PYTHONUNBUFFERED="1",  # the log file shows everything up to a failure
        )
        self.env = env

    def start(self) -> ClarionServer:
        log_path = self.log_dir / f"serve-{len(self.servers) + 1}.log"
        server = ClarionServer(env=self.env, var_dir=self.var_dir, log_path=log_path)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    @contextlib.contextmanager
    def logs_on_failure(self):
        """On any failure inside the block: stop the servers, print their output, re-raise."""
        try:
            yield
        except BaseException:
            self.stop_all()
            for server in self.servers:
                print(f"\n----- {server.log_path} (serve on port {server.port}, exit code "
                      f"{server.exit_code}) -----\n{server.log()}")
            raise


def _group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as "pid command line"."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: only whether the group has any member
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [f"process group {pgid}"]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
            if int(pgrp) != pgid or state == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue
        members.append(f"{entry.name} {cmdline}")
    return members
