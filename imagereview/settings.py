"""Settings read from the environment, with embedded defaults that run on a laptop.

With nothing set: SQLite in WAL mode, the django-q2 ORM broker, local media files and the
built-in sandbox provider. DATABASE_URL, REDIS_URL, KIE_API_KEY, KIE_WEBHOOK_HMAC_KEY and
PUBLIC_BASE_URL switch to the real parts. DJANGO_ENV=production refuses insecure settings.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: str) -> int:
    return int(os.environ.get(name, default))


def envfloat(name: str, default: str) -> float:
    return float(os.environ.get(name, default))


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _s3_origin(endpoint_url: str, bucket: str, addressing_style: str) -> str:
    """Where a bucket's signed links point, as a CSP source: the endpoint's scheme and host,
    under the bucket's name with virtual-host addressing."""
    scheme, _, rest = endpoint_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{bucket}.{host}" if addressing_style == "virtual" else f"{scheme}://{host}"


INSECURE_SECRET_KEY = "insecure-development-key-change-me"

DJANGO_ENV = os.environ.get("DJANGO_ENV", "development")
PRODUCTION = DJANGO_ENV == "production"
SECRET_KEY = os.environ.get("SECRET_KEY", INSECURE_SECRET_KEY)
# Off unless asked for (DEBUG=1): its error pages list every URL and show local variables.
DEBUG = envbool("DEBUG", "false")

if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_ENV=production refuses to start with DEBUG on.")
if PRODUCTION and (SECRET_KEY == INSECURE_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "DJANGO_ENV=production needs SECRET_KEY set to a random value of 32+ characters."
    )

PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", PUBLIC_BASE_URL)

INSTALLED_APPS = [
    "imagereview.apps.ImageReviewConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "template_partials",
    "ninja",
    "csp",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "imagereview.bodylimits.RequestBodyLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "imagereview.urls"
WSGI_APPLICATION = "imagereview.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "imagereview.roles.context",
            ],
        },
    },
]

SQLITE_PATH = VAR_DIR / "db.sqlite3"
# Persistent connections suit processes that do one thing at a time: the cluster's workers,
# the dispatcher, gunicorn's sync workers (runstack gives the cluster and the dispatcher 60 s).
# A threaded web server starts a thread per client connection, and each thread's database
# connection would outlive it until PostgreSQL refuses new ones: so none unless told.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web, the cluster and the sandbox's callbacks read while one writes;
    # IMMEDIATE takes the write lock up front so concurrent writers wait instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that the cluster processes tests start can share it; one per
    # test run, so that runs side by side do not collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "imagereview"),
    "workers": envint("Q_WORKERS", "2"),
    "recycle": 500,
    # A job never takes this long; `retry` must exceed it so the ORM broker does not hand
    # out a task that is still running.
    "timeout": envint("Q_TIMEOUT", "90"),
    "retry": envint("Q_RETRY", "120"),
    "max_attempts": 3,
    # Our own tables hold the state; storing results makes the monitor lock them all.
    "save_limit": -1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    "label": "Cluster",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one account,
# or from one address, that account or address is refused for LOGIN_LOCKOUT_MINUTES (a
# further failure meanwhile starts the wait again). Failures are kept, one row each, in the
# admin's "Access failures"; deleting an "Access attempt" there unlocks at once. The address is
# REMOTE_ADDR: behind a proxy, the proxy must pass on the client's address. API tokens are
# not passwords and are not counted.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "5")
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# A success must not wipe the failures counted against its address (another account's).
AXES_RESET_ON_SUCCESS = False
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# whitenoise serves from here once collected; it must exist even before that.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Outside production whitenoise serves static files from where they are, DEBUG or not, so
# that `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "imagereview.bodylimits.FileSizeCapUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A body declaring more than these is refused (413) before it is read: from anyone not signed
# in (the login form, provider callbacks), from a signed-in person, and on the edit form
# (eight references of 30 MB each and the fields). The API keeps its own caps, below.
REQUEST_MAX_ANONYMOUS_BODY_BYTES = envint("REQUEST_MAX_ANONYMOUS_BODY_BYTES", str(1024 * 1024))
REQUEST_MAX_BODY_BYTES = envint("REQUEST_MAX_BODY_BYTES", str(10 * 1024 * 1024))
REQUEST_MAX_UPLOAD_BODY_BYTES = envint(
    "REQUEST_MAX_UPLOAD_BODY_BYTES", str(8 * 30 * 1024 * 1024 + 1024 * 1024)
)
# One uploaded file past this is dropped as it streams in (references over 30 MB are refused
# with a message anyway).
UPLOAD_MAX_FILE_BYTES = envint("UPLOAD_MAX_FILE_BYTES", str(32 * 1024 * 1024))
DATA_UPLOAD_MAX_NUMBER_FILES = 20
# Form fields other than files (a CSV batch sent back for confirmation is the largest).
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

# The JSON API. Calls a minute per token (or signed-in user), counted across web processes.
API_RATE_LIMIT = envint("API_RATE_LIMIT", "120")
# Guest links: pages a minute per link and per client address (images count apart, more),
# and the longest a link may live.
GUEST_RATE_LIMIT = envint("GUEST_RATE_LIMIT", "60")
GUEST_FILE_RATE_LIMIT = envint("GUEST_FILE_RATE_LIMIT", "600")
GUEST_LINK_MAX_DAYS = envint("GUEST_LINK_MAX_DAYS", "30")
# A declared Content-Length over these is refused before the body is read: JSON bodies, and
# multipart bodies (up to eight references of 30 MB each and the fields).
API_MAX_BODY_BYTES = envint("API_MAX_BODY_BYTES", str(1024 * 1024))
API_MAX_UPLOAD_BYTES = envint("API_MAX_UPLOAD_BYTES", str(8 * 30 * 1024 * 1024 + 1024 * 1024))
# Hosts the API fetches reference_urls from (through the guard of result downloads, which
# refuses private and loopback addresses unless the sandbox is in use); "*" for any host.
API_REFERENCE_URL_HOSTS = envlist("API_REFERENCE_URL_HOSTS", "*")
API_REFERENCE_URL_TIMEOUT = envfloat("API_REFERENCE_URL_TIMEOUT", "20")
# Idempotency-Key: answers kept this long; a concurrent retry waits this long for the first
# attempt's answer; an unanswered claim this old (its process died) may be taken over.
IDEMPOTENCY_TTL_HOURS = envint("IDEMPOTENCY_TTL_HOURS", "24")
IDEMPOTENCY_WAIT_SECONDS = envfloat("IDEMPOTENCY_WAIT_SECONDS", "10")
IDEMPOTENCY_STALE_SECONDS = envint("IDEMPOTENCY_STALE_SECONDS", "300")

# Content-Security-Policy: scripts, styles, images and requests from this origin only, no
# inline code; no plugins, no framing, forms post here. The API docs add data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# ---------------------------------------------------------------------------------------
# Stored media: references, outputs and their thumbnails (the default storage).
# Local files under MEDIA_ROOT unless STORAGE_BACKEND=s3 or AWS_STORAGE_BUCKET_NAME is set:
# then an S3-compatible bucket through django-storages. The bucket stays private; a page asks
# the app for a file, the app checks who is asking, then redirects to a signed link that
# expires after AWS_QUERYSTRING_EXPIRE seconds. Keys are the access key pair, or boto3's own
# chain (AWS_ACCESS_KEY_ID in the environment, an instance role) when they are not set.
MEDIA_S3_BUCKET = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
STORAGE_BACKEND = os.environ.get("STORAGE_BACKEND", "s3" if MEDIA_S3_BUCKET else "local")
if STORAGE_BACKEND not in ("local", "s3"):
    raise ImproperlyConfigured(f"STORAGE_BACKEND is 'local' or 's3', not {STORAGE_BACKEND!r}.")
if STORAGE_BACKEND == "s3" and not MEDIA_S3_BUCKET:
    raise ImproperlyConfigured("STORAGE_BACKEND=s3 needs AWS_STORAGE_BUCKET_NAME.")
# How long a signed link to a stored file stays valid (seconds).
MEDIA_URL_EXPIRE = envint("AWS_QUERYSTRING_EXPIRE", "300")
if STORAGE_BACKEND == "s3":
    MEDIA_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL", "")
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_S3_BUCKET,
            "endpoint_url": MEDIA_S3_ENDPOINT_URL or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": os.environ.get("AWS_S3_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_S3_SECRET_ACCESS_KEY") or None,
            "location": os.environ.get("AWS_LOCATION", ""),
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            "signature_version": os.environ.get("AWS_S3_SIGNATURE_VERSION", "s3v4"),
            # Two requests may store the same image (the path holds its sha256): each keeps
            # its own object, as on local disk, so deleting one never takes the other's.
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": MEDIA_URL_EXPIRE,
        },
    }
    # Pages show images from the bucket: the browser follows the redirect to its origin.
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] += envlist(
        "MEDIA_IMG_ORIGINS",
        _s3_origin(
            MEDIA_S3_ENDPOINT_URL, MEDIA_S3_BUCKET, os.environ.get("AWS_S3_ADDRESSING_STYLE", "")
        )
        if MEDIA_S3_ENDPOINT_URL
        else f"https://{MEDIA_S3_BUCKET}.s3.amazonaws.com,"
        f"https://{MEDIA_S3_BUCKET}.s3.{os.environ.get('AWS_S3_REGION_NAME', 'us-east-1')}"
        ".amazonaws.com",
    )
# Local files in production: the app answers with X-Accel-Redirect to these internal nginx
# locations (which alias MEDIA_ROOT and PUBLISH_ROOT) and nginx sends the file. Empty: the
# app streams the file itself, as in development.
MEDIA_ACCEL_REDIRECT = os.environ.get("MEDIA_ACCEL_REDIRECT", "")
PUBLISH_ACCEL_REDIRECT = os.environ.get("PUBLISH_ACCEL_REDIRECT", "")
# ---------------------------------------------------------------------------------------

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # HTTPS only, and browsers told so for a year; a site that must also answer on plain
    # HTTP (or shares its domain with one) lowers these through the environment.
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "true")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", str(365 * 24 * 3600))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "true")
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "true")

# The provider. Without a key the built-in sandbox on localhost plays Kie.ai.
SANDBOX_HOST = os.environ.get("SANDBOX_HOST", "127.0.0.1")
SANDBOX_PORT = envint("SANDBOX_PORT", "8765")
KIE_API_KEY = os.environ.get("KIE_API_KEY", "")
USE_SANDBOX = not KIE_API_KEY
if PRODUCTION and USE_SANDBOX:
    # The sandbox is a stand-in that also lets results come from loopback addresses.
    raise ImproperlyConfigured("DJANGO_ENV=production needs KIE_API_KEY: the sandbox is not Kie.")
if USE_SANDBOX:
    KIE_API_KEY = "sandbox-key"
    _sandbox_url = f"http://{SANDBOX_HOST}:{SANDBOX_PORT}"
    KIE_API_BASE = os.environ.get("KIE_API_BASE", _sandbox_url)
    KIE_UPLOAD_BASE = os.environ.get("KIE_UPLOAD_BASE", KIE_API_BASE)
else:
    KIE_API_BASE = os.environ.get("KIE_API_BASE", "https://api.kie.ai")
    KIE_UPLOAD_BASE = os.environ.get("KIE_UPLOAD_BASE", "https://kieai.redpandaai.co")
KIE_MODEL = os.environ.get("KIE_MODEL", "nano-banana-pro")
KIE_WEBHOOK_HMAC_KEY = os.environ.get("KIE_WEBHOOK_HMAC_KEY", "")
KIE_CALLBACK_TOLERANCE = envint("KIE_CALLBACK_TOLERANCE", "300")
KIE_CONNECT_TIMEOUT = envfloat("KIE_CONNECT_TIMEOUT", "5")
KIE_READ_TIMEOUT = envfloat("KIE_READ_TIMEOUT", "30")
KIE_CALLBACKS = envbool("KIE_CALLBACKS", "true")
# The provider's limits, and a margin so that our clock and the provider's never disagree.
KIE_SUBMIT_LIMIT = envint("KIE_SUBMIT_LIMIT", "20")
KIE_SUBMIT_WINDOW = envfloat("KIE_SUBMIT_WINDOW", "10")
KIE_QUERY_LIMIT = envint("KIE_QUERY_LIMIT", "10")
KIE_QUERY_WINDOW = envfloat("KIE_QUERY_WINDOW", "1")
KIE_RATE_MARGIN = envfloat("KIE_RATE_MARGIN", "0.03")
# 3% of one second is 30 ms, less than a busy host's scheduling jitter: queries (only a
# fallback to callbacks) keep a wider margin.
KIE_QUERY_MARGIN = envfloat("KIE_QUERY_MARGIN", "0.15")
# A submit or refresh job waits this long at most for its slot, else it is deferred.
KIE_SLOT_MAX_WAIT = envfloat("KIE_SLOT_MAX_WAIT", "3")
# Credits per image by resolution, to know before submitting whether the balance covers it.
KIE_PRICES = {"1K": 18, "2K": 18, "4K": 24}
KIE_CREDITS_MAX_AGE = envint("KIE_CREDITS_MAX_AGE", "300")

SANDBOX = {
    "latency": {
        "waiting": envfloat("SANDBOX_LATENCY_WAITING", "0.3"),
        "queuing": envfloat("SANDBOX_LATENCY_QUEUING", "0.3"),
        "generating": envfloat("SANDBOX_LATENCY_GENERATING", "1.0"),
    },
}

# Result downloads: only from these hosts ("*" for any public host; ".example.com" for a
# domain and its subdomains). Loopback addresses are allowed only while the sandbox is in use.
RESULT_ALLOWED_HOSTS = envlist(
    "RESULT_ALLOWED_HOSTS",
    f"{SANDBOX_HOST},localhost" if USE_SANDBOX else ".aiquickdraw.com,.redpandaai.co,.kie.ai",
)
RESULT_MAX_BYTES = envint("RESULT_MAX_BYTES", str(40 * 1024 * 1024))
RESULT_TIMEOUT = envfloat("RESULT_TIMEOUT", "30")
THUMBNAIL_SIZE = envint("THUMBNAIL_SIZE", "384")

# The reconciler: when to look at a generation whose callback has not come.
# With callbacks the first poll is only a fallback; without them, poll as the provider
# advises (every few seconds at first).
RECONCILE_FIRST_POLL = envint("RECONCILE_FIRST_POLL", "20" if KIE_CALLBACKS else "3")
# How long a dispatched job may sit in the broker before the dispatcher sends it again.
DISPATCH_LEASE = envint("DISPATCH_LEASE", "30")
# Seconds between the dispatcher's passes; it hands out create slots a little further ahead.
DISPATCH_INTERVAL = envfloat("DISPATCH_INTERVAL", "1")
# The dispatcher sends due work only while fewer jobs than this wait in the broker.
DISPATCH_MAX_BACKLOG = envint("DISPATCH_MAX_BACKLOG", "100")
RECONCILE_SUBMITTING_GRACE = envint("RECONCILE_SUBMITTING_GRACE", "180")
RECONCILE_GIVE_UP = envint("RECONCILE_GIVE_UP", "900")

# Callback evidence from strangers, bounded: per generation, refusal and window of
# CALLBACK_REFUSED_WINDOW seconds, the first CALLBACK_REFUSED_KEPT refused callbacks from one
# address (and CALLBACK_REFUSED_KEPT_PER_GENERATION from all) are kept in full, the rest
# counted in a RefusedCallbackTally. A body over CALLBACK_MAX_BYTES is refused unread.
# One generation may name at most CALLBACK_UNCLAIMED_MAX tasks it does not hold (each is
# asked about); authentic callbacks naming more are kept and not followed.
CALLBACK_REFUSED_WINDOW = envint("CALLBACK_REFUSED_WINDOW", "3600")
CALLBACK_REFUSED_KEPT = envint("CALLBACK_REFUSED_KEPT", "5")
CALLBACK_REFUSED_KEPT_PER_GENERATION = envint("CALLBACK_REFUSED_KEPT_PER_GENERATION", "20")
CALLBACK_MAX_BYTES = envint("CALLBACK_MAX_BYTES", str(256 * 1024))
CALLBACK_UNCLAIMED_MAX = envint("CALLBACK_UNCLAIMED_MAX", "4")

# Review policy.
REVIEW_FORBID_SELF_APPROVAL = envbool("REVIEW_FORBID_SELF_APPROVAL", "true")

# Publishing. Each target is a Django storage (STORAGES["publish-<name>"]): a local folder
# always, and an S3-compatible bucket through django-storages when PUBLISH_S3_BUCKET is set.
PUBLISH_ROOT = Path(os.environ.get("PUBLISH_ROOT", VAR_DIR / "published"))
STORAGES["publish-local"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": PUBLISH_ROOT, "base_url": None, "allow_overwrite": True},
}
PUBLISH_S3_BUCKET = os.environ.get("PUBLISH_S3_BUCKET", "")
if PUBLISH_S3_BUCKET:
    STORAGES["publish-s3"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": PUBLISH_S3_BUCKET,
            "endpoint_url": os.environ.get("PUBLISH_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("PUBLISH_S3_REGION") or None,
            "access_key": os.environ.get("PUBLISH_S3_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("PUBLISH_S3_SECRET_ACCESS_KEY") or None,
            "location": os.environ.get("PUBLISH_S3_PREFIX", ""),
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
PUBLISH_TARGETS = [
    alias.removeprefix("publish-") for alias in STORAGES if alias.startswith("publish-")
]
# Where the publish button sends an output: the bucket when there is one.
PUBLISH_DEFAULT_TARGET = os.environ.get(
    "PUBLISH_DEFAULT_TARGET", "s3" if PUBLISH_S3_BUCKET else "local"
)
# Publish every output as it is approved (a request's own setting wins).
PUBLISH_ON_APPROVAL = envbool("PUBLISH_ON_APPROVAL", "false")
# Manifests name reviewers only when this is on; otherwise they give the reviewer's role.
MANIFEST_REVIEWER_NAMES = envbool("MANIFEST_REVIEWER_NAMES", "false")
PUBLISH_MAX_ATTEMPTS = envint("PUBLISH_MAX_ATTEMPTS", "6")
# A ZIP export streams its files, but keeps a directory entry per file until the end.
EXPORT_MAX_OUTPUTS = envint("EXPORT_MAX_OUTPUTS", "5000")

# The operations dashboard: what a credit costs in money, and how long work may sit in a
# state (seconds; review in hours) before it is shown as stuck.
CREDIT_PRICE = envfloat("CREDIT_PRICE", "0.005")
CREDIT_CURRENCY = os.environ.get("CREDIT_CURRENCY", "USD")
OPS_STUCK_QUEUED = envint("OPS_STUCK_QUEUED", "600")
OPS_STUCK_SUBMITTING = envint("OPS_STUCK_SUBMITTING", "300")
OPS_STUCK_SUBMITTED = envint("OPS_STUCK_SUBMITTED", "600")
OPS_STUCK_SUCCEEDED = envint("OPS_STUCK_SUCCEEDED", "300")
OPS_STUCK_REVIEW_HOURS = envint("OPS_STUCK_REVIEW_HOURS", "48")

# Content Credentials (C2PA) in published PNG and JPEG files. Without a key and certificate
# chain a local test CA and signer are made on first use, under var/, marked as untrusted.
C2PA_SIGNING_KEY = os.environ.get("C2PA_SIGNING_KEY", "")
C2PA_CERTIFICATE_CHAIN = os.environ.get("C2PA_CERTIFICATE_CHAIN", "")
C2PA_TIMESTAMP_URL = os.environ.get("C2PA_TIMESTAMP_URL", "")
C2PA_LOCAL_DIR = Path(os.environ.get("C2PA_LOCAL_DIR", VAR_DIR / "c2pa"))
C2PA_ENABLED = envbool("C2PA_ENABLED", "true")

# Downstream webhooks (Standard Webhooks). Seconds to wait before each retry after the first
# attempt: Svix's schedule, about a day in all.
WEBHOOK_RETRY_SCHEDULE = [
    int(seconds)
    for seconds in envlist("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000")
]
WEBHOOK_TIMEOUT = envfloat("WEBHOOK_TIMEOUT", "15")
# Endpoints on loopback addresses (a receiver on this machine) only outside production;
# private and link-local addresses never, and only https in production.
WEBHOOK_ALLOW_LOOPBACK = envbool("WEBHOOK_ALLOW_LOOPBACK", "false" if PRODUCTION else "true")
WEBHOOK_REQUIRE_HTTPS = envbool("WEBHOOK_REQUIRE_HTTPS", "true" if PRODUCTION else "false")

# Drift alerts: the recent window (seconds) is compared with the DRIFT_BASELINE_DAYS before it,
# and judged only on at least DRIFT_MIN_SAMPLES items.
DRIFT_WINDOW = envint("DRIFT_WINDOW", "3600")
DRIFT_BASELINE_DAYS = envint("DRIFT_BASELINE_DAYS", "7")
DRIFT_MIN_SAMPLES = envint("DRIFT_MIN_SAMPLES", "10")
# Median latency (submitted to completed) this many times the baseline's.
DRIFT_LATENCY_FACTOR = envfloat("DRIFT_LATENCY_FACTOR", "2")
# A rate (failures, acceptance-check failures, rejections) this many times the baseline's,
# and at least DRIFT_RATE_MIN_RISE above it, so that a baseline of zero is not all-or-nothing.
DRIFT_RATE_FACTOR = envfloat("DRIFT_RATE_FACTOR", "2")
DRIFT_RATE_MIN_RISE = envfloat("DRIFT_RATE_MIN_RISE", "0.1")
# Share of completed tasks told by an accepted callback, with callbacks on.
DRIFT_CALLBACK_FLOOR = envfloat("DRIFT_CALLBACK_FLOOR", "0.8")
# Tracking gaps and broken asset URLs in the window tolerated before an alert.
DRIFT_TRACKING_GAPS = envint("DRIFT_TRACKING_GAPS", "0")
DRIFT_BROKEN_URLS = envint("DRIFT_BROKEN_URLS", "0")
# Stored outputs re-hashed by each check.
DRIFT_STORAGE_SAMPLE = envint("DRIFT_STORAGE_SAMPLE", "20")
# Low credits: fewer days left at the last 7 days' burn, or less than this many images' price.
DRIFT_LOW_CREDIT_DAYS = envfloat("DRIFT_LOW_CREDIT_DAYS", "3")
DRIFT_LOW_CREDIT_IMAGES = envint("DRIFT_LOW_CREDIT_IMAGES", "10")

# Email: the console on the embedded defaults, SMTP once EMAIL_HOST is set.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = envint("EMAIL_PORT", "587")
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "true")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "20")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "imagereview <imagereview@localhost>")
# A request awaiting review longer than this is overdue in reviewers' digests.
REVIEW_OVERDUE_HOURS = envint("REVIEW_OVERDUE_HOURS", "24")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "imagereview": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}
