"""Django settings for Chisel, read from the environment (and an optional `.env` file) only."""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` file beside manage.py (written by `make demo`) fills in what the real environment leaves unset.
env.read_env(env.str("CHISEL_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

# https://docs.djangoproject.com/en/5.2/ref/settings/#secret-key — required, never defaulted.
SECRET_KEY = env.str("SECRET_KEY")
# https://docs.djangoproject.com/en/5.2/ref/settings/#debug
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Security defaults are the production ones; the demo's `.env` relaxes them for plain HTTP on localhost.
# https://docs.djangoproject.com/en/5.2/ref/settings/#secure-ssl-redirect
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# https://docs.djangoproject.com/en/5.2/ref/settings/#secure-hsts-seconds
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# https://docs.djangoproject.com/en/5.2/ref/settings/#session-cookie-secure
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
# https://docs.djangoproject.com/en/5.2/ref/settings/#csrf-cookie-secure
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
# https://docs.djangoproject.com/en/5.2/ref/settings/#session-cookie-httponly
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

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
    "drf_spectacular_sidecar",
    "axes",
    "annotate",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "annotate.middleware.RequestGuardMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "annotate.middleware.LoginThrottleMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# https://django-csp.readthedocs.io/en/latest/configuration.html — no inline scripts anywhere; inline
# styles are allowed (the admin, Swagger UI and the SVG charts use them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Request size, refused from Content-Length before the body is read (annotate.middleware).
# https://docs.djangoproject.com/en/5.2/ref/settings/#data-upload-max-memory-size
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# https://docs.djangoproject.com/en/5.2/ref/settings/#file-upload-max-memory-size
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
CHISEL_MAX_UPLOAD_BYTES = env.int("CHISEL_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)

ROOT_URLCONF = "chisel.urls"
WSGI_APPLICATION = "chisel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "chisel" / "templates"],  # admin/base_site.html: the favicon on every admin page
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

# The embedded default is SQLite; production and the test suite set DATABASE_URL to PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'chisel.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Health checks cost a round trip per request on the hot path; a broken connection fails one request instead.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; IMMEDIATE transactions take the write lock up front so two claims
    # cannot both read a pair as free, and WAL lets readers go on meanwhile.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Password guessing: django-axes locks a username, and separately an address, out after AXES_FAILURE_LIMIT
# failed logins for AXES_COOLOFF_HOURS (https://django-axes.readthedocs.io/en/latest/4_configuration.html);
# `manage.py axes_reset` (or axes_reset_username NAME / axes_reset_ip ADDRESS) lifts lockouts at once.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(hours=env.float("AXES_COOLOFF_HOURS", default=0.5))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Behind a reverse proxy, count the proxies so the client's own address is used (else everyone shares one).
AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list("AXES_IPWARE_META_PRECEDENCE_ORDER", default=["REMOTE_ADDR"])

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
# Images are served by annotate.views.serve_media, which checks the login first.
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Where images, exports and training runs (datasets, LoRA checkpoints) are kept (annotate/storage.py):
# `local`: this host's folders MEDIA_ROOT, CHISEL_EXPORT_ROOT and CHISEL_CHECKPOINT_ROOT (the demo; one host);
# `s3`: one bucket of S3-compatible object storage (AWS S3, R2, MinIO, SeaweedFS…) through django-storages, under
# the prefixes media/, exports/ and checkpoints/, shared by every web host and worker.
CHISEL_STORAGE = env.str("CHISEL_STORAGE", default="local")
if CHISEL_STORAGE not in ("local", "s3"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"CHISEL_STORAGE is {CHISEL_STORAGE!r}; it must be local or s3.")
# https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html — keys empty: boto3's own chain
# (AWS_ACCESS_KEY_ID…, an instance role). The endpoint is empty for AWS itself.
CHISEL_S3 = {
    "bucket_name": env.str("CHISEL_S3_BUCKET", default="chisel"),
    "endpoint_url": env.str("CHISEL_S3_ENDPOINT_URL", default="") or None,
    "access_key": env.str("CHISEL_S3_ACCESS_KEY_ID", default="") or None,
    "secret_key": env.str("CHISEL_S3_SECRET_ACCESS_KEY", default="") or None,
    "region_name": env.str("CHISEL_S3_REGION", default="") or None,
    # Path-style URLs (endpoint/bucket/key) work with every S3-compatible server; AWS takes `virtual` too.
    "addressing_style": env.str("CHISEL_S3_ADDRESSING_STYLE", default="path"),
    "signature_version": "s3v4",
    "default_acl": None,  # objects stay private: images are served through the app (annotate.views.serve_media)
    "querystring_auth": True,
    "file_overwrite": True,  # names are content-addressed or made unique by the caller
}
# Keys start with this prefix (empty: at the bucket's root), so that several deployments may share one bucket.
CHISEL_S3_PREFIX = env.str("CHISEL_S3_PREFIX", default="").strip("/")
if CHISEL_STORAGE == "s3":
    STORAGES["default"] = {"BACKEND": "annotate.s3.AppServedS3Storage",
                           "OPTIONS": {**CHISEL_S3, "location": "/".join(filter(None, [CHISEL_S3_PREFIX, "media"]))}}
# This host's copies of checkpoints fetched from object storage (the sampler and trainer read local folders).
CHISEL_CACHE_ROOT = env.path("CHISEL_CACHE_ROOT", default=BASE_DIR / "var" / "cache")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that a caller without credentials gets 401 with `WWW-Authenticate: Token`. DRF's
        # TokenAuthentication with a short per-process cache (a deactivated user is refused within seconds).
        "annotate.api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "annotate.api.schema.ChiselAutoSchema",
    "EXCEPTION_HANDLER": "annotate.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "annotate.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chisel API",
    "DESCRIPTION": "Pairwise image preference annotation for post-training text-to-image models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package, so the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DefectFlag": "annotate.models.Judgement.Flag",
        "ScreenChoice": "annotate.services.SCREEN_CHOICES",
        "StoredChoice": "annotate.models.Judgement.Choice",
    },
}

# Request rates per user (per address for logins), counted in the cache; far above what a fast expert needs:
# at 1 judgement/s with prefetch, the page makes at most 60 claims and 60 submissions a minute.
CHISEL_THROTTLE_RATES = {
    "claims": env.str("CHISEL_THROTTLE_CLAIMS", default="240/min"),
    "submissions": env.str("CHISEL_THROTTLE_SUBMISSIONS", default="240/min"),
    "exports": env.str("CHISEL_THROTTLE_EXPORTS", default="30/hour"),
    "login": env.str("CHISEL_THROTTLE_LOGIN", default="60/min"),
}
# Exports a lead may have queued or running at once; one more is refused (429, code too_many_exports).
CHISEL_MAX_ACTIVE_EXPORTS = env.int("CHISEL_MAX_ACTIVE_EXPORTS", default=3)

# Where exported datasets are written (downloads are served from here to leads only).
CHISEL_EXPORT_ROOT = env.path("CHISEL_EXPORT_ROOT", default=BASE_DIR / "var" / "exports")
# Where this Chisel is reached from outside (https://chisel.example.org): exports write absolute image URLs under it.
# Empty: image_0_url / image_1_url are paths relative to the media folder.
CHISEL_PUBLIC_URL = env.str("CHISEL_PUBLIC_URL", default="")

# Where training runs write their datasets, states and LoRA checkpoints.
CHISEL_CHECKPOINT_ROOT = env.path("CHISEL_CHECKPOINT_ROOT", default=BASE_DIR / "var" / "checkpoints")
CHISEL_TRAIN_LEASE = timedelta(seconds=env.int("CHISEL_TRAIN_LEASE_SECONDS", default=300))
# How long a sample task holds its round before the beat takes it for dead (renewed every third while it works).
CHISEL_SAMPLING_HOLD = timedelta(seconds=env.int("CHISEL_SAMPLING_HOLD_SECONDS", default=900))
CHISEL_TRAIN_MAX_ATTEMPTS = env.int("CHISEL_TRAIN_MAX_ATTEMPTS", default=3)  # then the round fails with the reason
CHISEL_TRAIN_TIMEOUT = timedelta(seconds=env.int("CHISEL_TRAIN_TIMEOUT_SECONDS", default=12 * 3600))  # one attempt
CHISEL_EXPORT_STALE = timedelta(seconds=env.int("CHISEL_EXPORT_STALE_SECONDS", default=600))  # no progress: retried
CHISEL_EXPORT_MAX_ATTEMPTS = env.int("CHISEL_EXPORT_MAX_ATTEMPTS", default=3)

# API tokens expire this many days after they were made or rotated (manage.py rotate_token); 0: never.
CHISEL_TOKEN_TTL_DAYS = env.float("CHISEL_TOKEN_TTL_DAYS", default=0)

# Modules whose GUARD_RAILS extend the promotion gate's registry (annotate/guard_rails.py) beside the built-in rails
# of annotate/rails.py. The toy world's caption-adherence rail is one; on a real model it says "not applicable".
CHISEL_GUARD_RAIL_MODULES = env.list("CHISEL_GUARD_RAIL_MODULES", default=["sampler.toy.guard_rail"])

# Annotation
CHISEL_LEASE = timedelta(seconds=env.int("CHISEL_LEASE_SECONDS", default=600))
CHISEL_MAX_PREFETCH = env.int("CHISEL_MAX_PREFETCH", default=10)

# Celery: Redis in production and tests; the demo uses the file-system transport under var/.
# The default names a host only so that kombu does not warn "No hostname was supplied" on every message sent.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "chisel.fs_broker:Transport"  # kombu's, with messages written atomically
    _queue_dir = env.path("CELERY_FS_DIR", default=BASE_DIR / "var" / "celery")
    for _sub in ("queue", "processed", "control"):
        (Path(_queue_dir) / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(Path(_queue_dir) / "queue"),
        "data_folder_out": str(Path(_queue_dir) / "queue"),
        "processed_folder": str(Path(_queue_dir) / "processed"),
        "control_folder": str(Path(_queue_dir) / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after the visibility timeout: longer than the longest task (a training
    # attempt), or a second worker would start a task the first one still runs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS",
                                      default=int(CHISEL_TRAIN_TIMEOUT.total_seconds()) + 3600),
    }
# The cache (throttle counters): CACHE_URL if set, else the Redis of a Redis broker, else this process's memory.
# https://docs.djangoproject.com/en/5.2/topics/cache/
if "CACHE_URL" in env:
    CACHES = {"default": env.cache("CACHE_URL")}
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CELERY_BROKER_URL,
                          "KEY_PREFIX": "chisel-cache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_IGNORE_RESULT = True
# Long GPU tasks: acknowledged when done, requeued when their worker dies, one task reserved per worker process.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ROUTES = {
    "annotate.tasks.sample_pairs": {"queue": "sample"},
    "annotate.tasks.sample_round_eval": {"queue": "sample"},
    "annotate.tasks.train_round": {"queue": "train"},
}
CELERY_BEAT_SCHEDULE = {
    "advance-rounds": {
        "task": "annotate.tasks.advance_rounds",
        "schedule": env.float("CHISEL_ADVANCE_SECONDS", default=10.0),
    },
    "refill-sample-buffers": {
        "task": "annotate.tasks.refill_sample_buffers",
        "schedule": env.float("CHISEL_REFILL_SECONDS", default=30.0),
    },
    "requeue-stale-training": {
        "task": "annotate.tasks.requeue_stale_training",
        "schedule": env.float("CHISEL_REQUEUE_SECONDS", default=60.0),
    },
    "requeue-stale-exports": {
        "task": "annotate.tasks.requeue_stale_exports",
        "schedule": env.float("CHISEL_REQUEUE_SECONDS", default=60.0),
    },
    "reap-expired-leases": {
        "task": "annotate.tasks.reap_expired_leases",
        "schedule": env.float("CHISEL_REAP_SECONDS", default=30.0),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
