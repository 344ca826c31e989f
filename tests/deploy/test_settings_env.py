"""Every setting comes from the environment, and the environment is documented: each variable
clarion/settings.py reads is in docs/deploy.md's table, deploy/clarion.env.example names only
variables something reads, and `manage.py check --deploy` is clean with that example."""

import ast
import re
import subprocess
import sys

from .support import ROOT, procfile, production_env

# Read by uvicorn (the Procfile's and the systemd units' web server), not by Clarion.
UVICORN_VARIABLES = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}


def settings_variables() -> set[str]:
    """The names clarion/settings.py reads: os.environ.get("X"), os.environ["X"],
    _env_bool("X"), _env_list("X"); and prefixes it reads every variable of ("ANYMAIL_*")."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "clarion/settings.py").read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "_env_bool", "_env_list", "os.getenv"):
                names.add(node.args[0].value)
        elif isinstance(node, ast.DictComp | ast.ListComp | ast.SetComp | ast.GeneratorExp) \
                and any("os.environ" in ast.unparse(loop.iter) for loop in node.generators):
            # {name: value for name, value in os.environ.items() if name.startswith("X_")}
            names.update(call.args[0].value + "*" for call in ast.walk(node)
                         if isinstance(call, ast.Call) and ast.unparse(call.func).endswith(
                             ".startswith") and isinstance(call.args[0], ast.Constant))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def documented_variables() -> set[str]:
    """The variables of docs/deploy.md's table (`NAME` in its first column; `ANYMAIL_<NAME>`
    as the prefix `ANYMAIL_*`)."""
    names = set()
    for line in (ROOT / "docs/deploy.md").read_text().splitlines():
        if line.startswith("| `"):
            for name in re.findall(r"`([A-Z][A-Z0-9_<>]*)`", line.split("|")[1]):
                names.add(re.sub(r"<[A-Z]+>$", "*", name))
    return names


def example_environment() -> dict[str, str]:
    """deploy/clarion.env.example as systemd's EnvironmentFile reads it (quotes removed)."""
    values = {}
    for line in (ROOT / "deploy/clarion.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value.strip().removeprefix('"').removesuffix('"')
    return values


def test_the_settings_read_the_variables_this_test_reads():
    # The scan itself: a name it failed to see would never be checked against the docs.
    names = settings_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "REDIS_URL", "ANYMAIL_*",
            "DB_CONNECT_TIMEOUT", "QUEUE_TIMEOUT", "CLARION_STUCK_AFTER_SECONDS"} <= names
    assert len(names) > 60


def test_every_variable_the_settings_read_is_documented_in_deploy_md():
    missing = settings_variables() - documented_variables()
    assert not missing, f"read by clarion/settings.py, not in docs/deploy.md's table: {missing}"


def test_the_example_environment_names_only_variables_something_reads():
    known = settings_variables() | UVICORN_VARIABLES
    unknown = {name for name in example_environment()
               if name not in known and not (name.startswith("ANYMAIL_") and "ANYMAIL_*" in known)}
    assert not unknown, f"deploy/clarion.env.example names unused variables: {unknown}"


def test_check_deploy_is_clean_with_the_example_environment(tmp_path):
    env = production_env(database_url="postgres://clarion@127.0.0.1:1/clarion",
                         var_dir=tmp_path / "var")
    for name in ("SECRET_KEY", "CLARION_ENCRYPTION_KEY", "INBOX_HMAC_SECRET"):
        example = example_environment()
        assert example[name] == "CHANGE-ME", name
    for name in ("PUBLIC_URL", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_HSTS_SECONDS",
                 "SECURE_SSL_REDIRECT", "TRUST_X_FORWARDED_PROTO", "SECURE_HSTS_PRELOAD",
                 "SECURE_HSTS_INCLUDE_SUBDOMAINS", "LOG_FORMAT"):
        env.pop(name, None)
    example = {name: value for name, value in example_environment().items()
               if value != "CHANGE-ME" and name not in ("CLARION_VAR_DIR", "STATIC_ROOT")}
    env.update(example)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # HSTS for subdomains and preloading stay off until every subdomain is HTTPS-only (the
    # example says so): the two warnings that remain are those, and nothing else.
    output = result.stdout + result.stderr
    assert set(re.findall(r"\(security\.[EW]\d+\)", output)) == {
        "(security.W005)", "(security.W021)"}, output


def test_the_procfile_runs_the_documented_processes():
    commands = procfile()
    assert set(commands) == {"web", "worker", "release"}
    assert commands["web"].startswith("uvicorn ") and "clarion.asgi:application" in \
        commands["web"]
    assert commands["worker"] == "python manage.py qcluster"
    units = {path.name: path.read_text() for path in (ROOT / "deploy/systemd").glob("*.service")}
    assert set(units) == {"clarion-web@.service", "clarion-worker@.service"}
    assert "clarion.asgi:application" in units["clarion-web@.service"]
    assert "manage.py qcluster" in units["clarion-worker@.service"]
    assert "KillMode=mixed" in units["clarion-worker@.service"]
    for text in units.values():
        assert "EnvironmentFile=/etc/clarion/clarion.env" in text and "Restart=always" in text


def test_every_documented_web_command_sets_the_inbox_websockets_options():
    """The Procfile, the systemd unit and docs/deploy.md's commands all start uvicorn without
    permessage-deflate (the inbox's frames are small; a zlib stream per socket cost ~37 KiB and
    a compression per frame: bench/README.md) and with keepalive pings every 60 s (the inbox
    heartbeat keeps proxies open; the pings only find dead peers)."""
    deploy_doc = (ROOT / "docs/deploy.md").read_text()
    commands = [procfile()["web"], (ROOT / "deploy/systemd/clarion-web@.service").read_text(),
                *re.findall(r"\.venv/bin/uvicorn (?:[^\n\\]|\\\n)*", deploy_doc)]
    assert len(commands) >= 4, commands
    for command in commands:
        assert "--ws-per-message-deflate false --ws-ping-interval 60" in command, command
