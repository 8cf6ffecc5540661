"""LabelHub settings. Every deployment-specific value comes from a LABELHUB_* environment variable
or, where the environment lacks it, the project's ``.env`` file (``labelhub/env.py``)."""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from labelhub.env import Env, default_env_file

BASE_DIR = Path(__file__).resolve().parent.parent

# The environment first, then the project's .env (labelhub/env.py): a bad .env line stops the
# start naming its line, and so does a LABELHUB_ name in it that no setting below reads.
ENV = Env(default_env_file(BASE_DIR))
env_str, env_bool, env_int, env_float, env_list = ENV.str, ENV.bool, ENV.int, ENV.float, ENV.list


# DEBUG is opt-in (LABELHUB_DEBUG=1: the demo scripts and the tests); production runs without it
# and refuses to start on the well-known development key.
DEBUG = env_bool("LABELHUB_DEBUG", False)
DEV_SECRET_KEY = "dev-only-insecure-key-change-me"
SECRET_KEY = env_str("LABELHUB_SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "LABELHUB_SECRET_KEY is not set: set it to a long random value (see README, "
        '"Production settings"), or set LABELHUB_DEBUG=1 on a development machine.'
    )
ALLOWED_HOSTS = env_list("LABELHUB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("LABELHUB_CSRF_TRUSTED_ORIGINS", [])

# HTTPS (on by default without DEBUG): secure cookies, redirect to https, HSTS. Behind a TLS
# proxy, LABELHUB_PROXY_SSL_HEADER=1 trusts its X-Forwarded-Proto (only if the proxy sets it).
LABELHUB_HTTPS = env_bool("LABELHUB_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LABELHUB_HTTPS
SECURE_SSL_REDIRECT = LABELHUB_HTTPS
SECURE_HSTS_SECONDS = env_int("LABELHUB_HSTS_SECONDS", 365 * 24 * 3600) if LABELHUB_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("LABELHUB_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("LABELHUB_HSTS_PRELOAD", True)
if env_bool("LABELHUB_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "storages",
    "runs",
    "annotation",
    "scoring",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "labelhub.security.RequestSizeLimitMiddleware",  # 413 before anything reads the body
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/ under gunicorn (after collectstatic)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into a 429
]

ROOT_URLCONF = "labelhub.urls"
WSGI_APPLICATION = "labelhub.wsgi.application"

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
                "labelhub.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str("LABELHUB_DB_NAME", "labelhub"),
        "USER": env_str("LABELHUB_DB_USER", "postgres"),
        "PASSWORD": env_str("LABELHUB_DB_PASSWORD", ""),
        "HOST": env_str("LABELHUB_DB_HOST", "127.0.0.1"),
        "PORT": str(env_int("LABELHUB_DB_PORT", 5432)),
        "CONN_MAX_AGE": env_int("LABELHUB_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Login, basic-auth and token requests are throttled per username and per client IP (django-axes):
# LABELHUB_LOGIN_FAILURE_LIMIT failures lock that username, and that IP, for the cool-off time.
AUTHENTICATION_BACKENDS = [
    "labelhub.security.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LABELHUB_LOGIN_FAILURE_LIMIT", 10)
LABELHUB_LOGIN_COOLOFF_MINUTES = env_int("LABELHUB_LOGIN_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = LABELHUB_LOGIN_COOLOFF_MINUTES / 60  # hours
AXES_LOCKOUT_CALLABLE = "labelhub.security.lockout_response"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# Behind a proxy, the client IP is the X-Forwarded-For entry this many hops from the right.
AXES_IPWARE_PROXY_COUNT = env_int("LABELHUB_PROXY_COUNT", 0) or None
if AXES_IPWARE_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("LABELHUB_STATIC_ROOT", str(BASE_DIR / "var" / "static")))

# Media: local filesystem by default, S3 (django-storages) when a bucket is configured.
MEDIA_ROOT = Path(env_str("LABELHUB_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media-files/"  # never served directly; media goes through annotation.views.clip_media
S3_BUCKET = env_str("LABELHUB_S3_BUCKET", "")
S3_ENDPOINT_URL = env_str("LABELHUB_S3_ENDPOINT_URL", "") or None
S3_REGION = env_str("LABELHUB_S3_REGION", "") or None
S3_URL_SECONDS = env_int("LABELHUB_S3_URL_SECONDS", 300)
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT_URL,
            "region_name": S3_REGION,
            "querystring_auth": True,
            "querystring_expire": S3_URL_SECONDS,
            "signature_version": "s3v4",  # presigned media URLs signed the current way everywhere
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Ingest: manifests may only name files under these roots; limits a clip must meet.
LABELHUB_IMPORT_ROOTS = [
    Path(p).resolve() for p in env_list("LABELHUB_IMPORT_ROOTS", [str(BASE_DIR / "var" / "import")])
]
LABELHUB_MAX_CLIP_SECONDS = env_float("LABELHUB_MAX_CLIP_SECONDS", 60)
LABELHUB_MAX_CLIP_FRAMES = env_int("LABELHUB_MAX_CLIP_FRAMES", 3000)
LABELHUB_MAX_CLIP_PIXELS = env_int("LABELHUB_MAX_CLIP_PIXELS", 3840 * 2160)
LABELHUB_MIN_CLIP_SIDE = env_int("LABELHUB_MIN_CLIP_SIDE", 16)
LABELHUB_MAX_CLIP_BYTES = env_int("LABELHUB_MAX_CLIP_BYTES", 512 * 1024 * 1024)
LABELHUB_FLAGS_TO_PULL_CLIP = env_int("LABELHUB_FLAGS_TO_PULL_CLIP", 2)
LABELHUB_UNDO_WINDOW_SECONDS = env_int(
    "LABELHUB_UNDO_WINDOW_SECONDS", 120
)  # U reopens the last submit

# Models: presets and where full weights live (local directory or hub id); never downloaded in tests.
LABELHUB_REWARD_PRESET = env_str("LABELHUB_REWARD_PRESET", "tiny")
LABELHUB_GENERATOR_PRESET = env_str("LABELHUB_GENERATOR_PRESET", "tiny")
LABELHUB_COGVIDEOX_PATH = env_str("LABELHUB_COGVIDEOX_PATH", "THUDM/CogVideoX-5b-I2V")
# Full AnimeReward encoders: LABELHUB_REWARD_SOURCE_<NAME> (CLIP, IDEFICS2, XCLIP, GROUNDING_DINO,
# SAM, BLIP) is a local directory or hub id (IDEFICS2: a Mantis-8B-Idefics2 / Idefics2 checkpoint or
# a saved Idefics2VisionTransformer); unset names fall back to the released checkpoints' hub ids.
LABELHUB_REWARD_SOURCES = {
    name: env_str(f"LABELHUB_REWARD_SOURCE_{name.upper()}", "")
    for name in ("clip", "idefics2", "xclip", "grounding_dino", "sam", "blip")
    if env_str(f"LABELHUB_REWARD_SOURCE_{name.upper()}", "")
}
# The anisora reward preset: Bilibili's released AnimeReward, the release's reward/ folder laid out
# as its READMEs say (weights/ and character/IP_checkpoints/; README "AnimeReward weights").
LABELHUB_ANISORA_REWARD_DIR = env_str("LABELHUB_ANISORA_REWARD_DIR", "")
LABELHUB_ARTIFACTS_ROOT = Path(
    env_str("LABELHUB_ARTIFACTS_ROOT", str(BASE_DIR / "var" / "artifacts"))
)

# Celery: Redis broker, two queues. GPU work: late ack, prefetch 1, one task at a time per worker.
CELERY_BROKER_URL = env_str("LABELHUB_REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("LABELHUB_CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "runs.execute": {"queue": "gpu"},  # every GPU job: reward training, scoring, GAPO, ...
    # The sweepers must not wait behind a backlog of ingest rows (a restarted worker drains the
    # queue in order): ingest messages go to the lower-priority list (Redis: 0 first).
    "annotation.ingest_row": {"queue": "default", "priority": 6},
    "runs.*": {"queue": "default"},
    "annotation.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LABELHUB_TASK_SOFT_TIME_LIMIT", 6 * 3600)
# A parent run (generation, scoring, a loop round) waits for all its chunks or steps: a paper-
# scale round on one GPU is about 11 days of generation, so its task gets 30 days, not 6 h.
LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT = env_int(
    "LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT", 30 * 24 * 3600
)
# A training run (reward, GAPO/DPO/SFT) is one job that can outlast 6 h at paper scale (a LoRA on
# the 8B regressors over tens of thousands of clips; thousands of 5B steps): 7 days. Its
# heartbeat catches a dead worker; this bounds one that hangs alive.
LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT = env_int(
    "LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT", 7 * 24 * 3600
)
# An unacknowledged message (its worker was killed) comes back after this, not after hours.
# Long GPU runs are not redelivered into a second copy: their task checks the run's status and
# heartbeat first (runs.services), and stale runs are recovered by fail-stale-runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("LABELHUB_BROKER_VISIBILITY_TIMEOUT", 600),
}
# A GPU job reports a heartbeat with its progress; a RUNNING run silent this long lost its worker
# and is marked failed (resumable from its last checkpoint) by the beat task below.
LABELHUB_RUN_STALE_SECONDS = env_int("LABELHUB_RUN_STALE_SECONDS", 600)
# A running job's own thread touches its heartbeat this often, whatever phase the job is in.
LABELHUB_RUN_HEARTBEAT_SECONDS = env_int("LABELHUB_RUN_HEARTBEAT_SECONDS", 30)
# A generation run waits this long for the default-queue workers to import its candidates.
LABELHUB_GENERATION_IMPORT_TIMEOUT = env_int("LABELHUB_GENERATION_IMPORT_TIMEOUT", 3600)
# An export snapshot being built beats (a thread, through long queries and lock waits too) every
# LABELHUB_EXPORT_HEARTBEAT_SECONDS; silent for LABELHUB_EXPORT_STALE_SECONDS = its builder died.
LABELHUB_EXPORT_STALE_SECONDS = env_int("LABELHUB_EXPORT_STALE_SECONDS", 300)
LABELHUB_EXPORT_HEARTBEAT_SECONDS = env_float("LABELHUB_EXPORT_HEARTBEAT_SECONDS", 30)
# How often beat sweeps stuck export snapshots and stale runs (seconds).
LABELHUB_EXPORT_SWEEP_SECONDS = env_float("LABELHUB_EXPORT_SWEEP_SECONDS", 60)
LABELHUB_RUN_SWEEP_SECONDS = env_float("LABELHUB_RUN_SWEEP_SECONDS", 60)
# A processing import row heartbeats this often; silent for LABELHUB_IMPORT_STALE_SECONDS means its
# worker died: the sweeper requeues it (up to LABELHUB_IMPORT_MAX_ATTEMPTS) or fails it. A queued
# row whose message may have been lost (a Redis restart) is sent again after
# LABELHUB_IMPORT_RESEND_SECONDS; a duplicate delivery is a no-op.
LABELHUB_IMPORT_HEARTBEAT_SECONDS = env_float("LABELHUB_IMPORT_HEARTBEAT_SECONDS", 10)
LABELHUB_IMPORT_STALE_SECONDS = env_float("LABELHUB_IMPORT_STALE_SECONDS", 60)
LABELHUB_IMPORT_RESEND_SECONDS = env_float("LABELHUB_IMPORT_RESEND_SECONDS", 300)
LABELHUB_IMPORT_MAX_ATTEMPTS = env_int("LABELHUB_IMPORT_MAX_ATTEMPTS", 3)
LABELHUB_IMPORT_SWEEP_SECONDS = env_float("LABELHUB_IMPORT_SWEEP_SECONDS", 30)
# One ingest row is probe + transcode + stills: bounded by the ffmpeg timeouts above.
LABELHUB_INGEST_TASK_SOFT_TIME_LIMIT = env_int("LABELHUB_INGEST_TASK_SOFT_TIME_LIMIT", 900)
LABELHUB_INGEST_TASK_TIME_LIMIT = env_int("LABELHUB_INGEST_TASK_TIME_LIMIT", 960)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-imports": {
        "task": "annotation.sweep_stuck_imports",
        "schedule": LABELHUB_IMPORT_SWEEP_SECONDS,
        "options": {"queue": "default"},
    },
    "sweep-stuck-snapshots": {
        "task": "annotation.sweep_stuck_snapshots",
        "schedule": LABELHUB_EXPORT_SWEEP_SECONDS,
        "options": {"queue": "default"},
    },
    "sweep-stuck-dataset-folders": {
        "task": "annotation.sweep_stuck_dataset_folders",
        "schedule": LABELHUB_EXPORT_SWEEP_SECONDS,
        "options": {"queue": "default"},
    },
    "fail-stale-runs": {
        "task": "runs.fail_stale_runs",
        "schedule": LABELHUB_RUN_SWEEP_SECONDS,
        "options": {"queue": "default"},
    },
}

# Request bodies: JSON and form fields up to LABELHUB_MAX_BODY_BYTES (Django's limit, which the
# DRF JSON parser below also applies); any request, uploads included, up to
# LABELHUB_MAX_REQUEST_BYTES (labelhub.security.RequestSizeLimitMiddleware, 413 past it).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("LABELHUB_MAX_BODY_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
LABELHUB_MAX_REQUEST_BYTES = env_int("LABELHUB_MAX_REQUEST_BYTES", 64 * 1024 * 1024)

# The cache holds the API throttle counters: set LABELHUB_CACHE_URL (a Redis URL) in production so
# every web process shares them; without it each process counts on its own.
LABELHUB_CACHE_URL = env_str("LABELHUB_CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": LABELHUB_CACHE_URL}
        if LABELHUB_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Writes (POST and friends) per user, or per IP for anonymous clients: DRF's "N/second|minute|...".
LABELHUB_WRITE_RATE = env_str("LABELHUB_WRITE_RATE", "600/minute")

REST_FRAMEWORK = {
    # Scripts use a token (Authorization: Token <key>): one indexed lookup per request, where basic
    # auth pays a password hash on every request. The browser uses its session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "labelhub.security.HashedTokenAuthentication",  # the table holds digests only
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["labelhub.security.WriteRateThrottle"],
    "DEFAULT_PARSER_CLASSES": [
        "labelhub.security.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "labelhub.schema.AutoSchema",
    "EXCEPTION_HANDLER": "labelhub.api.exception_handler",  # a service's refusal -> its status
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LabelHub API",
    "DESCRIPTION": "Annotation, AnimeReward and GAPO training for anime image-to-video alignment.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is served to logged-in users only (labelhub/urls.py).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Applies the views' lazily recorded @extend_schema first (labelhub/schema_docs.py).
    "DEFAULT_GENERATOR_CLASS": "labelhub.schema.SchemaGenerator",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LABELHUB_LOG_LEVEL", "INFO")},
    # django-axes says "BEGIN version ..." on every start of every command: warnings only.
    "loggers": {"axes": {"level": "WARNING"}},
}

# WhiteNoise serves collectstatic's output; in DEBUG it also finds files in place.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG


# --- Ingest safety and crash recovery ------------------------------------------------------------
# Hostile media: every ffprobe/ffmpeg child is killed after this many seconds.
LABELHUB_FFMPEG_TIMEOUT_SECONDS = env_float("LABELHUB_FFMPEG_TIMEOUT_SECONDS", 120)
# Condition images and character references: PNG/JPEG/WebP, re-encoded to PNG, within these.
LABELHUB_MAX_IMAGE_PIXELS = env_int("LABELHUB_MAX_IMAGE_PIXELS", 40_000_000)
LABELHUB_MAX_IMAGE_BYTES = env_int("LABELHUB_MAX_IMAGE_BYTES", 50 * 1024 * 1024)
LABELHUB_MAX_PROMPT_CHARS = env_int("LABELHUB_MAX_PROMPT_CHARS", 4000)

# Last: every LABELHUB_ line of the .env must be one of the names read above (or the scripts').
ENV.check_unknown()
