"""LabelHub settings. Every deployment-specific value comes from a LABELHUB_* environment variable."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None else int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item for item in (part.strip() for part in value.split(",")) if item]


SECRET_KEY = env_str("LABELHUB_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = env_bool("LABELHUB_DEBUG", True)
ALLOWED_HOSTS = env_list("LABELHUB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("LABELHUB_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "storages",
    "annotation",
    "scoring",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/ under gunicorn (after collectstatic)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
        "PORT": env_str("LABELHUB_DB_PORT", "5432"),
        "CONN_MAX_AGE": env_int("LABELHUB_DB_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
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
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("LABELHUB_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("LABELHUB_S3_REGION", "") or None,
            "querystring_auth": True,
            "querystring_expire": env_int("LABELHUB_S3_URL_SECONDS", 300),
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
LABELHUB_MAX_CLIP_SECONDS = float(env_str("LABELHUB_MAX_CLIP_SECONDS", "60"))
LABELHUB_MAX_CLIP_FRAMES = env_int("LABELHUB_MAX_CLIP_FRAMES", 3000)
LABELHUB_MAX_CLIP_PIXELS = env_int("LABELHUB_MAX_CLIP_PIXELS", 3840 * 2160)
LABELHUB_MIN_CLIP_SIDE = env_int("LABELHUB_MIN_CLIP_SIDE", 16)
LABELHUB_MAX_CLIP_BYTES = env_int("LABELHUB_MAX_CLIP_BYTES", 512 * 1024 * 1024)
LABELHUB_FLAGS_TO_PULL_CLIP = env_int("LABELHUB_FLAGS_TO_PULL_CLIP", 2)

# Models: presets and where full weights live (local directory or hub id); never downloaded in tests.
LABELHUB_REWARD_PRESET = env_str("LABELHUB_REWARD_PRESET", "tiny")
LABELHUB_GENERATOR_PRESET = env_str("LABELHUB_GENERATOR_PRESET", "tiny")
LABELHUB_COGVIDEOX_PATH = env_str("LABELHUB_COGVIDEOX_PATH", "THUDM/CogVideoX-5b-I2V")
# Full AnimeReward encoders: LABELHUB_REWARD_SOURCE_<NAME> (CLIP, XCLIP, GROUNDING_DINO, SAM, BLIP) is
# a local directory or hub id; unset names fall back to the released checkpoints' hub ids.
LABELHUB_REWARD_SOURCES = {
    name: os.environ[f"LABELHUB_REWARD_SOURCE_{name.upper()}"]
    for name in ("clip", "xclip", "grounding_dino", "sam", "blip")
    if os.environ.get(f"LABELHUB_REWARD_SOURCE_{name.upper()}")
}
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
    "annotation.*": {"queue": "default"},
    "scoring.*": {"queue": "gpu"},
    "training.*": {"queue": "gpu"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LABELHUB_TASK_SOFT_TIME_LIMIT", 6 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 12 * 3600}
# A GPU job reports a heartbeat with its progress; a RUNNING run silent this long lost its worker
# and is marked failed (resumable from its last checkpoint) by the beat task below.
LABELHUB_RUN_STALE_SECONDS = env_int("LABELHUB_RUN_STALE_SECONDS", 600)
CELERY_BEAT_SCHEDULE = {
    "fail-stale-runs": {
        "task": "training.fail_stale_runs",
        "schedule": 60.0,
        "options": {"queue": "default"},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LabelHub API",
    "DESCRIPTION": "Annotation, AnimeReward and GAPO training for anime image-to-video alignment.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LABELHUB_LOG_LEVEL", "INFO")},
}

# WhiteNoise serves collectstatic's output; in DEBUG it also finds files in place.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
