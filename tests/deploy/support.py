"""Running Clarion as docs/deploy.md says, for tests: real processes (uvicorn, `manage.py
qcluster`) with the production environment, and a PostgreSQL server of the test's own.

- `production_env(...)`: the environment a production process gets (DEBUG off, secrets, hosts,
  HTTPS behind a load balancer), nothing inherited that would change it.
- `Service` (tests/processes.py): one long-running subprocess in its own process group, its
  output in a log file; `stop()` ends it and anything it started.
- `web(...)`, `qcluster(...)`: the two kinds of production process.
- `PrivatePostgres`: `initdb` into a temporary directory and `pg_ctl` on a free port, so a test
  may stop and restart *its* server (the shared one on 5432 is never touched).
- `request(...)`: one HTTP request through the "load balancer" (Host and X-Forwarded-Proto set).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from tests.conftest import free_port
from tests.processes import ROOT, Service, inherited_env

PUBLIC_HOST = "clarion.example.com"

# What a production deploy sets besides the database, Redis and the secrets (docs/deploy.md):
# HTTPS ends at the load balancer, which sets X-Forwarded-Proto.
PRODUCTION = {
    "PUBLIC_URL": f"https://{PUBLIC_HOST}",
    "ALLOWED_HOSTS": PUBLIC_HOST,
    "CSRF_TRUSTED_ORIGINS": f"https://{PUBLIC_HOST}",
    "TRUST_X_FORWARDED_PROTO": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "LOG_FORMAT": "json",
}


def production_env(*, database_url: str, var_dir: Path, redis_url: str | None = None,
                   **overrides: str) -> dict[str, str]:
    """The environment of a production process: this process's (PATH, …) without anything
    that configures Clarion (DEBUG, DATABASE_URL, CLARION_*, EMAIL_*, …), then PRODUCTION,
    fresh secrets, `database_url`, `redis_url` (the channel layer), `var_dir` (CLARION_VAR_DIR
    and STATIC_ROOT=var_dir/static) and `overrides`. Call it once per deployment: every process
    of one deployment must share the secrets."""
    env = {name: value for name, value in inherited_env().items()
           if name not in {"DEBUG", "DJANGO_SETTINGS_MODULE"}
           and not name.startswith(("DB_", "QUEUE_", "INBOX_", "SECURE_", "AXES_"))}
    env.update(PRODUCTION, DATABASE_URL=database_url, CLARION_VAR_DIR=str(var_dir),
               STATIC_ROOT=str(var_dir / "static"), SECRET_KEY=secrets.token_urlsafe(50),
               INBOX_HMAC_SECRET=secrets.token_hex(32),
               CLARION_ENCRYPTION_KEY=Fernet.generate_key().decode(),
               PYTHONUNBUFFERED="1",
               # The Procfile's `uvicorn` and `python` are this virtualenv's.
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    (var_dir / "static").mkdir(parents=True, exist_ok=True)  # what collectstatic would make
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def procfile() -> dict[str, str]:
    """The Procfile's process types and their commands ({"web": "uvicorn …", …})."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def web(name: str, *, env: dict[str, str], log_dir: Path) -> tuple[Service, int]:
    """A web process as the Procfile runs it (uvicorn, one process) on a free port of
    127.0.0.1. Returns (the service, its port)."""
    port = free_port()
    argv = ["sh", "-c", "exec " + procfile()["web"]]
    service = Service(name, argv, env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
                      log_path=log_dir / f"{name}.log")
    return service, port


def qcluster(name: str, *, env: dict[str, str], log_dir: Path) -> Service:
    """A worker process as the Procfile runs it (`manage.py qcluster`)."""
    return Service(name, ["sh", "-c", "exec " + procfile()["worker"]], env=env,
                   log_path=log_dir / f"{name}.log")


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """`manage.py *args` with `env`; its output; raises AssertionError when it fails."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result.stdout


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is the answer


_opener = urllib.request.build_opener(_NoRedirects)


def request(port: int, method: str, path: str, body=None, *, headers: dict | None = None,
            timeout: float = 15) -> Answer:
    """One HTTP request to 127.0.0.1:`port` as the load balancer forwards it (Host, HTTPS in
    X-Forwarded-Proto); 3xx, 4xx and 5xx are answers, not errors. A JSON `body` is sent as JSON."""
    headers = {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https", "Accept": "application/json",
               **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers,
                                 method=method)
    started = time.monotonic()
    try:
        with _opener.open(req, timeout=timeout) as response:
            status, answer_headers, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            status, answer_headers, content = error.code, error.headers, error.read()
    return Answer(status, {k.lower(): v for k, v in answer_headers.items()}, content,
                  time.monotonic() - started)


def wait_until_ready(services: dict[int, Service], timeout: float = 45) -> None:
    """Until each web service (by port) answers `/healthz` with 200; fails naming the service
    and its log when one exits or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for port, service in services.items():
        while True:
            if not service.alive():
                raise AssertionError(f"{service.name} exited:\n{service.log()[-3000:]}")
            with contextlib.suppress(OSError):
                if request(port, "GET", "/healthz", timeout=5).status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{service.name} did not answer /healthz within "
                                     f"{timeout} s:\n{service.log()[-3000:]}")
            time.sleep(0.2)


def wait_for(condition, what: str, timeout: float, interval: float = 0.1):
    """Until `condition()` is truthy (returns it); AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(interval)
    return value


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries (initdb, pg_ctl) installed, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: int(Path(path).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivatePostgres:
    """A PostgreSQL server of one test's own: `initdb` into a temporary directory, started
    with `pg_ctl` on a free port of 127.0.0.1 (its socket in that directory), trust auth for
    the user `postgres`. As root (PostgreSQL refuses to run as root) it runs as the system
    user `postgres`. `stop(mode="immediate")` is a crash: the next start recovers from the WAL.
    """

    def __init__(self):
        self.bin = postgres_bin_dir()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) installed")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")  # KeyError: no such user
        self.dir = Path(tempfile.mkdtemp(prefix="clarion-pg-"))
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")

    def _run(self, program: str, *args: str, timeout: float = 60) -> str:
        result = subprocess.run([str(self.bin / program), *args], capture_output=True,
                                text=True, timeout=timeout, cwd=self.dir,
                                user=self.user.pw_uid if self.user else None,
                                group=self.user.pw_gid if self.user else None,
                                extra_groups=[] if self.user else None)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}{self.server_log()[-2000:]}")
        return result.stdout

    def run_client(self, program: str, *args: str, stdin: str | None = None,
                   timeout: float = 120) -> str:
        """A client program of this PostgreSQL version (pg_dump, psql) run as this user;
        returns its output; RuntimeError when it fails."""
        result = subprocess.run([str(self.bin / program), *args], input=stdin,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr[-3000:]}")
        return result.stdout

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # fsync off: a stopped server is a crashed server process, never a crashed machine,
        # so the OS still holds every write; the WAL recovery on start is the real one.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-w",
                  "-t", "60", "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: "fast" (clients disconnected, clean shutdown) or "immediate" (every
        server process quits at once, as in a crash)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def server_log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def destroy(self) -> None:
        """Stop the server (immediately) if it runs, and delete its directory."""
        try:
            if self.running():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
