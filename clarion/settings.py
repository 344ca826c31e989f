"""Clarion settings: everything comes from the environment, with defaults that run embedded.

With nothing set, Clarion runs on SQLite (WAL mode) in ``var/``, the django-q2 ORM broker on that
same database, an in-process channel layer and a console email backend.
"""

import hashlib
import hmac
import os
import re
import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CLARION_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _embedded_secret_key() -> str:
    """A secret key kept in var/ so signed links survive restarts of the embedded mode."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: of processes starting at once
    # (parallel test workers, `serve`'s web and worker), one key wins and none reads half a file.
    draft = VAR_DIR / f".secret_key.{os.getpid()}"
    draft.write_text(secrets.token_urlsafe(50))
    draft.chmod(0o600)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _embedded_secret_key()
DEBUG = _env_bool("DEBUG")
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")
PORT = int(os.environ.get("PORT", "8000"))
# The address people and email links reach this server at.
PUBLIC_URL = os.environ.get("PUBLIC_URL", f"http://localhost:{PORT}").rstrip("/")
if PUBLIC_URL.startswith("https://"):
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
    # Only once every subdomain is served over HTTPS alone (docs/security.md).
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
    SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD")
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT")
if _env_bool("TRUST_X_FORWARDED_PROTO"):
    # Only behind a proxy that sets X-Forwarded-Proto itself.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin, with the task-shaped home page (notifications/admin_site.py).
    "notifications.admin_site.ClarionAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "channels",
    "corsheaders",
    "auditlog",
    "axes",
    "csp",
    "clarion",
    "notifications",
    "inbox",
    "preferences",
    "events",
    "analytics",
    "compat",
]

MIDDLEWARE = [
    "clarion.paths.RawPathMiddleware",  # first: every later piece routes on the same path
    "clarion.parsers.StorableRequestTextMiddleware",  # NUL in a path or query: a 400
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The admin in English, French or German (clarion/locale.py); nothing else changes language.
    "clarion.locale.AdminLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The audit log: the admin user (auditlog) or the API key (clarion) behind each change.
    "auditlog.middleware.AuditlogMiddleware",
    "clarion.audit.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy on the pages that choose one (clarion/content_policy.py).
    "csp.middleware.CSPMiddleware",
    # Last: answers a locked-out admin login (clarion/login_throttle.py).
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "clarion.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The admin login: after AXES_FAILURE_LIMIT failures for one username from one address, that
# pair is locked out for AXES_COOLOFF_TIME (hours); a success resets the count.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_TIME", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # nothing on stdout (`manage.py mcp` speaks MCP on it)

ROOT_URLCONF = "clarion.urls"
ASGI_APPLICATION = "clarion.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Audit log (django-auditlog; clarion/audit.py) ----------------------------------------------

# What is audited: every change, through the admin or the API, to these models. Fields that the
# workers change on their own (timestamps, circuit-breaker state) are left out; secrets are
# recorded as changed, masked (clarion.audit.mask).
_AUDITED = {
    "notifications.workflow": {},
    "notifications.step": {},
    "notifications.template": {},
    "notifications.templateversion": {},
    # Submitted, approved, published, superseded; the document itself is the version's own.
    "notifications.workflowversion": {"exclude_fields": ["document"]},
    "notifications.layout": {},
    "notifications.providerconfig": {
        "exclude_fields": ["consecutive_failures", "circuit_open_until", "last_error"],
        "mask_fields": ["credentials_encrypted"],
        "mapping_fields": {"credentials_encrypted": "credentials"}},
    "notifications.tenant": {
        "mask_fields": ["inbox_secrets_encrypted"],
        "mapping_fields": {"inbox_secrets_encrypted": "inbox secrets"}},
    "notifications.apikey": {"exclude_fields": ["last_used_at"], "mask_fields": ["secret_hash"],
                             "mapping_fields": {"secret_hash": "secret"}},
    "preferences.preferenceset": {},
    "preferences.workflowdefault": {},
    "preferences.category": {},
}
AUDITLOG_INCLUDE_TRACKING_MODELS = tuple(
    {"model": model, **options,
     "exclude_fields": ["updated_at", *options.get("exclude_fields", [])]}
    for model, options in _AUDITED.items())
AUDITLOG_MASK_CALLABLE = "clarion.audit.mask"
AUDITLOG_STORE_JSON_CHANGES = True
# A changed foreign key reads as its row ("welcome/mail [en] v2"), not a bare number.
AUDITLOG_USE_FK_STRING_REPRESENTATION = True

# --- Database ---------------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'clarion.sqlite3'}"
# Connections. A web process (clarion/asgi.py marks it) serves each request's sync view on a
# thread of its own, so it borrows connections from psycopg's pool (Django's "pool" option): kept
# open, shared by the threads, capped per process. A qcluster worker runs one task at a time on
# one thread, so it keeps its connection between tasks (CONN_MAX_AGE, 60 s; django-q closes it
# when unusable), saving a connect per task. Other commands (migrate, shell, tests) open one per
# use. An explicit CONN_MAX_AGE applies to every process and turns the pool off (Django allows
# only one of the two).
_PROCESS = "worker" if sys.argv[1:2] == ["qcluster"] else os.environ.get("CLARION_PROCESS", "")
_CONN_MAX_AGE = os.environ.get("CONN_MAX_AGE") or ("60" if _PROCESS == "worker" else None)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=int(_CONN_MAX_AGE or 0),
        conn_health_checks=True,
    )
}
if (DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _PROCESS == "web"
        and not int(_CONN_MAX_AGE or 0) and _env_bool("DB_POOL", True)):
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "20")),
        # While PostgreSQL is down a request waits this long for a connection, then is a 503
        # with Retry-After: keep it well under the clients' and load balancer's timeouts.
        "timeout": int(os.environ.get("DB_POOL_TIMEOUT", "5")),
        # The pool retries a failed connection with a doubling delay (1, 2, 4 … s) until this
        # many seconds have passed, then starts afresh on the next request: without a bound
        # (psycopg's default is 300 s) a pool that failed for a minute waits half a minute
        # more after PostgreSQL is back, answering 503 all along (tests/deploy/
        # test_postgres_restart.py).
        "reconnect_timeout": float(os.environ.get("DB_POOL_RECONNECT_TIMEOUT", "5")),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection attempt to a server that does not answer (down, a dropped route) fails
    # after this many seconds instead of the kernel's TCP timeout (minutes).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", int(os.environ.get("DB_CONNECT_TIMEOUT", "5")))
# Behind PgBouncer in transaction mode, server-side cursors must be off.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = _env_bool("DISABLE_SERVER_SIDE_CURSORS")
if (DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
        and _env_bool("DB_PREPARED_STATEMENTS",
                      not DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"])):
    # The statements of clarion.db.prepared_cursor (a trigger request's few) are prepared on a
    # connection once run this many times on it; the ORM's own cursors bind parameters on the
    # client and never prepare. Off by default behind PgBouncer in transaction mode (before
    # 1.21 it does not keep a prepared statement with its server connection).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock at
        # BEGIN so two writers queue on `timeout` instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests that start real processes (daphne, qcluster) need a database file they can open.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("CLARION_TEST_SQLITE", str(VAR_DIR / "test.sqlite3"))
    }
    Path(DATABASES["default"]["TEST"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue (django-q2) ------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL and os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get(
        "CLARION_TEST_REDIS_CHOSEN"):
    # The suite in parallel (`make test`: pytest-xdist workers gw0, gw1, …): as pytest-django gives
    # each worker its own test database, each gets its own Redis database (1, 2, …), or one
    # worker's inbox groups, queues and counters would reach another's. Once: the processes a
    # test starts inherit the chosen REDIS_URL, or are given a Redis of the test's own.
    from urllib.parse import urlsplit, urlunsplit

    _worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    REDIS_URL = urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{1 + _worker}"))
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["CLARION_TEST_REDIS_CHOSEN"] = "1"
# What every key Clarion writes in Redis starts with: the channel layer's groups and channels
# (inbox pushes go to a group named by the recipient's id), the trigger rate limit's counters and,
# with QUEUE_BROKER=redis, the task queue. Deployments that share one Redis database must each
# set their own, or one's pushes reach the other's sockets and one's workers take (and, unable to
# verify them, drop) the other's tasks. Empty by default: the keys Clarion has always used.
REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "")
if not re.fullmatch(r"[A-Za-z0-9_.:-]{0,64}", REDIS_KEY_PREFIX):
    raise ImproperlyConfigured(
        f"REDIS_KEY_PREFIX must be at most 64 letters, digits, '_', '.', ':' or '-', "
        f"not {REDIS_KEY_PREFIX!r}.")

QUEUE_BROKER = os.environ.get("QUEUE_BROKER", "orm")  # "orm" (default) or "redis"
Q_CLUSTER = {
    "name": "clarion",
    "workers": int(os.environ.get("QUEUE_WORKERS", "2")),
    # A task that runs longer than `timeout` seconds is killed; one not acknowledged within
    # `retry` seconds (its worker died, or the database went away) is presented again.
    # timeout < retry (check notifications.E003), and a finite number of attempts.
    "timeout": int(os.environ.get("QUEUE_TIMEOUT", "60")),
    "retry": int(os.environ.get("QUEUE_RETRY", "90")),
    "max_attempts": int(os.environ.get("QUEUE_MAX_ATTEMPTS", "3")),
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    # Successful tasks are not kept: runs, messages and attempts are the record. Failures are.
    "save_limit": -1,
    "label": "Task queue",
}
if QUEUE_BROKER == "redis":
    if not REDIS_URL:
        raise ImproperlyConfigured("QUEUE_BROKER=redis needs REDIS_URL.")
    Q_CLUSTER["redis"] = REDIS_URL
    # django-q2 names its Redis list (and its stats keys) after the cluster. Only here: with the
    # ORM broker the name keys the queue's rows, which a prefix set later would orphan.
    Q_CLUSTER["name"] = f"{REDIS_KEY_PREFIX}clarion"
elif QUEUE_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
    # django-q2's ORM broker, woken on PostgreSQL by a queued task's NOTIFY instead of only
    # polling every `poll` seconds (clarion/queue_broker.py).
    Q_CLUSTER["broker_class"] = "clarion.queue_broker.WakingORM"
else:
    raise ImproperlyConfigured(f"QUEUE_BROKER must be 'orm' or 'redis', not {QUEUE_BROKER!r}.")

# --- Channel layer and in-app inbox ---------------------------------------------------------

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis' layer with batched receives and waiting connection pools
            # (clarion/channel_layer.py).
            "BACKEND": "clarion.channel_layer.RedisChannelLayer",
            # No client read timeout: redis-py 8 defaults to 5 s, which aborts the layer's
            # blocking BZPOPMIN and tears down every idle websocket (channels_redis#422).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                       # Messages waiting per channel before more are dropped. The sockets of
                       # one web process share one Redis key (channels-redis' process-specific
                       # channels), so this bounds a burst to the whole process: at the default
                       # of 100, a batch of runs writing 500 items dropped most of them
                       # (bench/websockets.py).
                       "capacity": 10_000,
                       "prefix": f"{REDIS_KEY_PREFIX}asgi"},
        }
    }
else:
    # In-process only: the embedded web process reaches its own sockets through it, and the
    # inbox's database bridge (INBOX_REALTIME="poll") carries items the worker process writes.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# How new InboxItems reach open websockets: "layer" pushes through the channel layer after commit
# (needs a layer every process shares: Redis); "poll" has each web process read new rows from
# the database every INBOX_POLL_SECONDS while sockets are open (embedded mode, no servers).
INBOX_REALTIME = os.environ.get("INBOX_REALTIME") or ("layer" if REDIS_URL else "poll")
if INBOX_REALTIME not in ("layer", "poll"):
    raise ImproperlyConfigured(f"INBOX_REALTIME must be 'layer' or 'poll', not {INBOX_REALTIME!r}.")
INBOX_POLL_SECONDS = float(os.environ.get("INBOX_POLL_SECONDS", "0.1"))
INBOX_HEARTBEAT_SECONDS = float(os.environ.get("INBOX_HEARTBEAT_SECONDS", "25"))
# A web process freezes what it holds out of the cyclic garbage collector's passes this often
# (seconds), and unfreezes and collects it all once at a quiet moment this long after the last
# time (clarion/collector.py: its full passes stopped the event loop ~1 s at 5,000 sockets). 0: off.
GC_FREEZE_SECONDS = float(os.environ.get("CLARION_GC_FREEZE_SECONDS", "30"))
GC_THAW_SECONDS = float(os.environ.get("CLARION_GC_THAW_SECONDS", "900"))
# How many requests a web process runs through Django's middleware and views at once, each on a
# thread; the others wait in the event loop (clarion/http.py: fewer threads hand the GIL over
# less, but fewer commits are flushed together). 0: a thread per concurrent request.
WEB_THREADS = int(os.environ.get("CLARION_WEB_THREADS", "0"))
# A socket checks this long after a push (and on every heartbeat) that no push to it was lost:
# an item older than this, never pushed, gets the client a `resync` frame (inbox/consumers.py).
INBOX_RESYNC_CHECK_SECONDS = float(os.environ.get("INBOX_RESYNC_CHECK_SECONDS", "2"))
INBOX_TOKEN_TTL_SECONDS = int(os.environ.get("INBOX_TOKEN_TTL_SECONDS", "3600"))
# The key of `recipient id + HMAC-SHA256(key, recipient id)` browser auth for items without a
# tenant (each tenant has its own inbox secret, in the admin or POST /api/v1/tenants/{key}/
# inbox-secret); your backend computes the same HMAC. Derived from SECRET_KEY when unset
# (`manage.py inbox_hmac <id>` prints one).
INBOX_HMAC_SECRET = os.environ.get("INBOX_HMAC_SECRET") or hmac.new(
    SECRET_KEY.encode(), b"clarion.inbox.hmac-secret", hashlib.sha256
).hexdigest()
# After a tenant's inbox secret is rotated, HMACs made with the previous one keep working this
# long (seconds), so the app can deploy the new one; 0 ends them at once.
INBOX_SECRET_ROTATION_SECONDS = int(os.environ.get("INBOX_SECRET_ROTATION_SECONDS", "86400"))
# Origins allowed to call the inbox API and open its websocket from a browser; "*" is safe
# because the inbox authenticates with headers and query parameters, never cookies.
INBOX_ALLOWED_ORIGINS = _env_list("INBOX_ALLOWED_ORIGINS", "*")
# The /demo/inbox/ page (only answers where the demo of `serve` is seeded).
INBOX_DEMO_PAGE = _env_bool("INBOX_DEMO_PAGE", True)
CORS_URLS_REGEX = r"^/api/v1/(inbox(/.*)?|approvals/[^/]+)$"
CORS_ALLOW_ALL_ORIGINS = INBOX_ALLOWED_ORIGINS == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else INBOX_ALLOWED_ORIGINS
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "x-clarion-recipient",
                      "x-clarion-hmac", "x-clarion-tenant"]

# --- Email ------------------------------------------------------------------------------------

EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "20"))
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Clarion <notifications@localhost>")
# Any ANYMAIL_<SETTING> variable configures the django-anymail ESP named by EMAIL_BACKEND,
# e.g. EMAIL_BACKEND=anymail.backends.sendgrid.EmailBackend ANYMAIL_SENDGRID_API_KEY=...
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_")
}

# --- REST API ---------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifications.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["notifications.api.auth.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["clarion.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "clarion.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Clarion API",
    "DESCRIPTION": "Trigger notification workflows and manage recipients, workflows and tenants.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: a self-hosted product needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # `<segment:…>` (clarion/paths.py): a recipient id, percent-encoded as one path segment.
    "PATH_CONVERTER_OVERRIDES": {"segment": {
        "type": "string", "minLength": 1,
        "description": "Percent-encoded as one path segment (UTF-8, RFC 3986), as "
                       "encodeURIComponent(id) or urllib.parse.quote(id, safe='') do: "
                       "team/ops is team%2Fops.",
    }},
}

# --- Static files, i18n, logging --------------------------------------------------------------

STATIC_URL = "static/"
if os.environ.get("STATIC_ROOT"):
    STATIC_ROOT = Path(os.environ["STATIC_ROOT"])  # production: filled by collectstatic
else:
    STATIC_ROOT = VAR_DIR / "static"
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# The embedded mode serves static files straight from the apps, no collectstatic needed.
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en"
# The admin's languages (the menu in its header; Accept-Language otherwise): clarion/locale.py.
LANGUAGES = [("en", "English"), ("fr", "Français"), ("de", "Deutsch")]
# The project's own catalog, for the site-wide templates (templates/) and apps without a catalog
# of their own; `make messages` extracts every app's strings, `make` compiles them.
LOCALE_PATHS = [BASE_DIR / "clarion" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; unset, it answers loopback only.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Several web processes: a shared directory for prometheus-client's multiprocess mode.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# LOG_FORMAT=json: one JSON object per line (python-json-logger), with the trigger, run and
# message ids the code is working on (clarion/logs.py); "text" (default) for people.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ids": {"()": "clarion.logs.ContextFilter"}},
    "formatters": {"json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    }},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["ids"],
                             **({"formatter": "json"} if LOG_FORMAT == "json" else {})}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx and httpcore log every provider request at INFO: the DeliveryAttempt is the record.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"},
                "httpcore": {"level": "WARNING"}},
}

# --- Clarion ----------------------------------------------------------------------------------

CLARION = {
    # Delivery retries for transient provider errors: attempts, then exponential backoff.
    # /metrics: the window of provider calls its latency histogram covers, in seconds.
    "METRICS_WINDOW_SECONDS": float(os.environ.get("CLARION_METRICS_WINDOW_SECONDS", "300")),
    "DELIVERY_MAX_ATTEMPTS": int(os.environ.get("CLARION_DELIVERY_MAX_ATTEMPTS", "5")),
    "DELIVERY_BACKOFF_SECONDS": float(os.environ.get("CLARION_DELIVERY_BACKOFF_SECONDS", "10")),
    "DELIVERY_BACKOFF_MAX_SECONDS": float(
        os.environ.get("CLARION_DELIVERY_BACKOFF_MAX_SECONDS", "600")
    ),
    # A run or message untouched for this long is considered stuck and re-enqueued by the sweeper.
    "STUCK_AFTER_SECONDS": int(os.environ.get("CLARION_STUCK_AFTER_SECONDS", "120")),
    # On PostgreSQL, each worker process starts an SMTP keeper that also holds its SMTP
    # connections across the commit of their attempts, so a worker killed then does not lose
    # the email (notifications/delivery/keeper.py). Off: that window stays (docs/concepts.md).
    # Never on SQLite (the embedded mode).
    "SMTP_KEEPER": _env_bool("CLARION_SMTP_KEEPER", True),
    # A worker keeps its SMTP connections open across emails to the same server with the same
    # credentials (notifications/providers/smtp_sessions.py): each is closed after this many
    # messages (1: a connection per message) or once idle this many seconds.
    "SMTP_MESSAGES_PER_CONNECTION": int(
        os.environ.get("CLARION_SMTP_MESSAGES_PER_CONNECTION", "100")),
    "SMTP_IDLE_SECONDS": float(os.environ.get("CLARION_SMTP_IDLE_SECONDS", "10")),
    "IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    # A workflow's draft is published only after someone who did not change it approves it
    # (docs/workflows.md, "Draft, review, publish"). The API's PUT publishes directly either way.
    "REQUIRE_REVIEW": _env_bool("CLARION_REQUIRE_REVIEW"),
    # Runs, step logs, messages, attempts, status and outbound events and inbox items older than
    # this many days are deleted (0: kept forever); a tenant's retention_days wins.
    "RETENTION_DAYS": int(os.environ.get("CLARION_RETENTION_DAYS", "90")),
    # The longest an approval may wait for its answer (its links are refused after it).
    "APPROVAL_MAX_WAIT_SECONDS": 90 * 86400,
    # Where a Slack interactivity request's response_url may point (an approval's button
    # answers there): Slack's own host.
    "SLACK_RESPONSE_HOSTS": ["hooks.slack.com"],
    # A first request holding an Idempotency-Key longer than this is taken as dead.
    "IDEMPOTENCY_LOCK_SECONDS": 60,
    "MAX_RECIPIENTS_PER_TRIGGER": 1000,
    # An advance task walks up to this many due runs in one transaction (its own, topped up
    # with others: notifications/engine/claim.py). A batch costs ~24 ms of a worker's CPU
    # whatever its size (its reads and statements) and ~0.7 ms a run (bench/README.md).
    "ADVANCE_BATCH_SIZE": int(os.environ.get("CLARION_ADVANCE_BATCH_SIZE", "100")),
    # Advance lanes: a trigger whose batch falls in a lane that an `advance_lane` task holds
    # queues no task of its own (that task claims due runs until none is left); so about this
    # many such tasks walk at once, whatever the number of triggers (engine/claim.py).
    "ADVANCE_LANES": max(1, int(os.environ.get("CLARION_ADVANCE_LANES", "4"))),
    # A held lane whose task claimed no full batch for this long counts as free: its task was
    # lost (a worker killed with the Redis broker, which does not present a task again).
    "ADVANCE_LANE_STALE_SECONDS": float(
        os.environ.get("CLARION_ADVANCE_LANE_STALE_SECONDS", "30")),
    # A topic fan-out creates this many runs per transaction.
    "FANOUT_BATCH_SIZE": int(os.environ.get("CLARION_FANOUT_BATCH_SIZE", "500")),
    # A template render taking longer than this (seconds) is stopped as a render error.
    "TEMPLATE_RENDER_SECONDS": float(os.environ.get("CLARION_TEMPLATE_RENDER_SECONDS", "2")),
    # Preference center and unsubscribe links never expire unless this is set (seconds).
    "PREFERENCES_TOKEN_MAX_AGE": (int(os.environ["CLARION_PREFERENCES_TOKEN_MAX_AGE"])
                                  if os.environ.get("CLARION_PREFERENCES_TOKEN_MAX_AGE") else None),
    # Fernet keys for ProviderConfig credentials, newest first; none: derived from SECRET_KEY.
    "ENCRYPTION_KEYS": _env_list("CLARION_ENCRYPTION_KEY", ""),
    # Circuit breaker per provider: opens after this many transient failures in a row, and lets
    # one probe through after the cool-down.
    "BREAKER_FAILURES": int(os.environ.get("CLARION_BREAKER_FAILURES", "5")),
    "BREAKER_COOLDOWN_SECONDS": float(os.environ.get("CLARION_BREAKER_COOLDOWN_SECONDS", "60")),
    # A delivery task sends up to this many due messages concurrently (1: one at a time).
    "DELIVERY_BATCH_SIZE": int(os.environ.get("CLARION_DELIVERY_BATCH_SIZE", "100")),
    # At most this many provider requests of a batch on the wire at once (the async HTTP
    # clients' 16 × 4 connections): each attempt is written `started` just before its request
    # goes out, so a killed worker leaves only these few of unknown outcome.
    "DELIVERY_CONCURRENCY": int(os.environ.get("CLARION_DELIVERY_CONCURRENCY", "64")),
    # Webhook and chat URLs that resolve to private or loopback addresses are refused (SSRF)
    # unless this is set.
    "ALLOW_PRIVATE_URLS": _env_bool("CLARION_ALLOW_PRIVATE_URLS"),
    # Signs webhook-channel requests when no webhook ProviderConfig names its own secret.
    "WEBHOOK_SIGNING_SECRET": os.environ.get("CLARION_WEBHOOK_SIGNING_SECRET", ""),
    # Rate limits (0: none), counted in the database across every process. Trigger calls per
    # API key per window (a 429 with Retry-After beyond it), and SMS per phone number per window
    # (beyond it the step's message is suppressed, "rate limited", so one caller cannot run up
    # the SMS bill).
    "TRIGGER_RATE_LIMIT": int(os.environ.get("CLARION_TRIGGER_RATE_LIMIT", "600")),
    "TRIGGER_RATE_LIMIT_WINDOW_SECONDS": int(
        os.environ.get("CLARION_TRIGGER_RATE_LIMIT_WINDOW_SECONDS", "60")),
    # How long a web process keeps an API key it checked (its row and tenant) before reading it
    # again: the longest a key revoked in another process still authenticates there.
    "API_KEY_CACHE_SECONDS": float(os.environ.get("CLARION_API_KEY_CACHE_SECONDS", "5")),
    # The most concurrent triggers of a web process written by one statement and commit
    # (notifications/services/group_commit.py); below 2, each trigger is written on its own.
    "TRIGGER_GROUP_COMMIT": int(os.environ.get("CLARION_TRIGGER_GROUP_COMMIT", "8")),
    # Where the trigger rate limit counts: "redis" (one script call per request, no database
    # row every trigger of a key updates) or "database" (RateLimitCounter rows, the embedded
    # mode). Default: Redis when REDIS_URL is set.
    "TRIGGER_RATE_LIMIT_STORE": os.environ.get("CLARION_TRIGGER_RATE_LIMIT_STORE")
    or ("redis" if REDIS_URL else "database"),
    "SMS_RATE_LIMIT_PER_RECIPIENT": int(
        os.environ.get("CLARION_SMS_RATE_LIMIT_PER_RECIPIENT", "10")),
    "SMS_RATE_LIMIT_WINDOW_SECONDS": int(
        os.environ.get("CLARION_SMS_RATE_LIMIT_WINDOW_SECONDS", "3600")),
}
