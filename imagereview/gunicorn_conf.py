"""gunicorn settings for the web process in production:

    gunicorn -c python:imagereview.gunicorn_conf imagereview.wsgi

Every value can be changed from the environment (GUNICORN_*). Pages never wait on the
provider and files are not streamed through Python (see fileserving.py), so a request is
short and a plain sync worker per core suits the app; behind nginx, which buffers slow
clients, nothing holds a worker for long.
"""

import multiprocessing
import os


def _env(name: str, default: str) -> str:
    return os.environ.get(f"GUNICORN_{name}", default)


bind = _env("BIND", "127.0.0.1:8000")
# Twice the cores, and one for the worker that is busy or restarting.
workers = int(_env("WORKERS", str(2 * multiprocessing.cpu_count() + 1)))
worker_class = _env("WORKER_CLASS", "sync")
threads = int(_env("THREADS", "1"))
# A request that takes longer is stuck: the worker is killed and replaced.
timeout = int(_env("TIMEOUT", "30"))
graceful_timeout = int(_env("GRACEFUL_TIMEOUT", "30"))
keepalive = int(_env("KEEPALIVE", "5"))
# Replace each worker after this many requests, at different moments, to cap slow leaks.
max_requests = int(_env("MAX_REQUESTS", "2000"))
max_requests_jitter = int(_env("MAX_REQUESTS_JITTER", "200"))
# Load the app once before forking: workers share its memory, and a broken setting stops
# the master at once instead of every worker in a restart loop.
preload_app = _env("PRELOAD", "true").lower() in ("1", "true", "yes", "on")
# Headers and request lines of sane size only; bodies have their own caps in settings.
limit_request_line = 8190
limit_request_fields = 100
# Workers keep their heartbeat in memory, not on a disk that may be slow.
worker_tmp_dir = _env("WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else "") or None

# nginx (or another proxy) on this host sets X-Forwarded-Proto; trust it from there only.
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

accesslog = _env("ACCESS_LOG", "-")
errorlog = _env("ERROR_LOG", "-")
loglevel = _env("LOG_LEVEL", "info")
# Who, what, the answer, its size, and how long it took (microseconds), one line each.
access_log_format = _env(
    "ACCESS_LOG_FORMAT",
    '%(h)s "%(r)s" %(s)s %(B)s %(D)sus "%(f)s" "%(a)s"',
)
proc_name = "imagereview-web"
