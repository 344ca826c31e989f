"""Production settings (everything from the environment, docs/deploy.md): `manage.py check
--deploy` is clean, and a production server's answers carry HSTS, X-Frame-Options,
Referrer-Policy and nosniff."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "PUBLIC_URL": "https://clarion.example.com",
    "ALLOWED_HOSTS": "clarion.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}

HEADERS_SCRIPT = """
import django, json
django.setup()
from django.test import Client
client = Client()
answers = {}
for path in ("/api/schema/", "/healthz", "/admin/login/"):
    response = client.get(path, secure=True, HTTP_HOST="clarion.example.com")
    answers[path] = {"status": response.status_code, **{name: response.get(name) for name in (
        "Strict-Transport-Security", "X-Frame-Options", "Referrer-Policy",
        "X-Content-Type-Options", "Cross-Origin-Opener-Policy")}}
plain = client.get("/healthz", HTTP_HOST="clarion.example.com")
answers["plain"] = {"status": plain.status_code, "location": plain.get("Location")}
print(json.dumps(answers))
"""


def run_with(env_overrides: dict, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(env_overrides, SECRET_KEY=secrets.token_urlsafe(60),
               DJANGO_SETTINGS_MODULE="clarion.settings")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    result = run_with(PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_names_what_a_plain_http_setup_lacks():
    # The embedded defaults (no https PUBLIC_URL) are not a production setup: the check says so.
    result = run_with({"PUBLIC_URL": "http://localhost:8000"}, "manage.py", "check", "--deploy",
                      "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS
    assert "security.W008" in result.stderr + result.stdout  # no HTTPS redirect


def test_production_answers_carry_the_security_headers():
    import json

    result = run_with(PRODUCTION, "-c", HEADERS_SCRIPT)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for path in ("/api/schema/", "/healthz", "/admin/login/"):
        answer = answers[path]
        assert answer["status"] == 200, (path, answer)
        assert answer["Strict-Transport-Security"] == \
            "max-age=31536000; includeSubDomains; preload", path
        assert answer["X-Frame-Options"] == "DENY", path
        assert answer["Referrer-Policy"] == "same-origin", path
        assert answer["X-Content-Type-Options"] == "nosniff", path
        assert answer["Cross-Origin-Opener-Policy"] == "same-origin", path
    assert answers["plain"] == {"status": 301,
                                "location": "https://clarion.example.com/healthz"}
