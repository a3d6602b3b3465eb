"""The production profile passes `check --deploy` clean; the app's own checks catch risky
settings."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User

from imagereview import checks
from tests.conftest import database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KIE_", "SECURE_", "DJANGO_", "RESULT_", "DEBUG"))
    }
    return env | {
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "images.example.com",
        "PUBLIC_BASE_URL": "https://images.example.com",
        "KIE_API_KEY": "kie-key",
        "KIE_WEBHOOK_HMAC_KEY": "webhook-key",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        **extra,
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db(transaction=True)
def test_the_production_profile_passes_check_deploy_without_a_warning(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_check_deploy_fails_on_the_production_profile_with_demo_passwords(tmp_path):
    # Hashed as the started process hashes (the tests' own hasher is a faster one).
    hashed = PBKDF2PasswordHasher().encode("reviewer-demo", "somesalt", iterations=1000)
    User.objects.create(username="reviewer", password=hashed)
    result = check_deploy(production_env(tmp_path))
    assert result.returncode != 0
    assert "imagereview.E002" in result.stderr + result.stdout


def ids(messages: list) -> list[str]:
    return [message.id for message in messages]


def test_callbacks_without_an_hmac_key_are_warned_about(settings):
    settings.KIE_CALLBACKS, settings.KIE_WEBHOOK_HMAC_KEY = True, ""
    assert ids(checks.check_callback_signing(None)) == ["imagereview.W001"]
    settings.KIE_WEBHOOK_HMAC_KEY = "key"
    assert checks.check_callback_signing(None) == []
    settings.KIE_CALLBACKS, settings.KIE_WEBHOOK_HMAC_KEY = False, ""
    assert checks.check_callback_signing(None) == []


def test_results_from_any_host_are_warned_about(settings):
    settings.RESULT_ALLOWED_HOSTS = [".kie.ai", "*"]
    assert ids(checks.check_result_hosts(None)) == ["imagereview.W002"]
    settings.RESULT_ALLOWED_HOSTS = [".kie.ai", ".aiquickdraw.com"]
    assert checks.check_result_hosts(None) == []


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:8765", "http://localhost:9000", "http://10.0.0.5", "http://[::1]:80"],
)
def test_a_provider_on_a_local_address_is_warned_about(settings, base):
    settings.USE_SANDBOX = False
    settings.KIE_API_BASE, settings.KIE_UPLOAD_BASE = "https://api.kie.ai", base
    assert ids(checks.check_sandbox(None)) == ["imagereview.W003"]


def test_the_sandbox_is_warned_about_and_the_real_provider_is_not(settings):
    settings.USE_SANDBOX = True
    assert ids(checks.check_sandbox(None)) == ["imagereview.W003"]
    settings.USE_SANDBOX = False
    settings.KIE_API_BASE = "https://api.kie.ai"
    settings.KIE_UPLOAD_BASE = "https://kieai.redpandaai.co"
    assert checks.check_sandbox(None) == []


def test_the_development_secret_key_is_an_error(settings):
    settings.SECRET_KEY = settings.INSECURE_SECRET_KEY
    assert ids(checks.check_default_secret_key(None)) == ["imagereview.E001"]
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    assert checks.check_default_secret_key(None) == []


@pytest.mark.django_db
def test_demo_accounts_with_their_published_passwords_are_an_error():
    admin = User.objects.create_user("admin", password="admin-demo")
    User.objects.create_user("requester", password="a-password-of-its-own")
    [error] = checks.check_demo_passwords(None)
    assert error.id == "imagereview.E002"
    assert "admin" in error.msg and "requester" not in error.msg
    admin.is_active = False
    admin.save()
    assert checks.check_demo_passwords(None) == []
