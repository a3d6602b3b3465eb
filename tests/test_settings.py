"""Settings from the environment, and the production profile's refusals."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "k" * 50


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("DEBUG", "SECRET_KEY", "DJANGO_ENV", "DATABASE_URL", "REDIS_URL", "KIE_API_KEY")
    }
    environment |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "imagereview.settings"}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.DATABASES['default']['ENGINE'], 'orm' in s.Q_CLUSTER, s.USE_SANDBOX, "
        "s.KIE_API_BASE)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_run_on_a_laptop(tmp_path):
    result = load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "django.db.backends.sqlite3",
        "True",
        "True",
        "http://127.0.0.1:8765",
    ]


def test_environment_switches_to_the_real_parts(tmp_path):
    result = load_settings(
        tmp_path,
        DATABASE_URL="postgres://u@db.internal:5432/app",
        REDIS_URL="redis://127.0.0.1:6379/0",
        KIE_API_KEY="real-key",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "django.db.backends.postgresql",
        "False",
        "False",
        "https://api.kie.ai",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "true", "SECRET_KEY": GOOD_KEY, "KIE_API_KEY": "k"}, "DEBUG on"),
        ({"KIE_API_KEY": "k"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short", "KIE_API_KEY": "k"}, "SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY}, "KIE_API_KEY"),
    ],
)
def test_production_profile_refuses_insecure_settings(tmp_path, env, message):
    result = load_settings(tmp_path, DJANGO_ENV="production", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_profile_starts_with_secure_settings(tmp_path):
    result = load_settings(
        tmp_path, DJANGO_ENV="production", SECRET_KEY=GOOD_KEY, KIE_API_KEY="real-key"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.settings_dict["OPTIONS"]["timeout"] >= 5


def test_database_connections_are_not_kept_unless_asked(tmp_path):
    """A threaded web server's threads would each keep a connection open until PostgreSQL
    refuses new ones: persistent connections are for processes that say so."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['CONN_MAX_AGE'])"
    )
    found = []
    for extra in ({}, {"DB_CONN_MAX_AGE": "60"}):
        environment = {k: v for k, v in os.environ.items() if k != "DB_CONN_MAX_AGE"}
        environment |= {
            "VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "imagereview.settings",
            "DATABASE_URL": "postgres://u@db.internal:5432/app",
            **extra,
        }
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        found.append(result.stdout.strip())
    assert found == ["0", "60"]
