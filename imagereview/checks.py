"""The app's own deployment checks (`manage.py check --deploy`) for its risky settings."""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from imagereview.management.commands.seed_demo import DEMO_ACCOUNTS


@register(Tags.security, deploy=True)
def check_callback_signing(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    if not settings.KIE_CALLBACKS or settings.KIE_WEBHOOK_HMAC_KEY:
        return []
    return [
        Warning(
            "Provider callbacks are trusted on the token in their URL alone.",
            hint="Set KIE_WEBHOOK_HMAC_KEY to the webhook HMAC key of the Kie.ai account.",
            id="imagereview.W001",
        )
    ]


@register(Tags.security, deploy=True)
def check_result_hosts(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    if "*" not in settings.RESULT_ALLOWED_HOSTS:
        return []
    return [
        Warning(
            "RESULT_ALLOWED_HOSTS is '*': results are downloaded from any public host a "
            "provider reply names.",
            hint="List the provider's file hosts (the default without '*' does).",
            id="imagereview.W002",
        )
    ]


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in ("localhost", settings.SANDBOX_HOST):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


@register(Tags.security, deploy=True)
def check_sandbox(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    """The sandbox, or any provider on this machine or network, is not Kie: it also lets
    results come from loopback addresses and never bills."""
    local = [url for url in (settings.KIE_API_BASE, settings.KIE_UPLOAD_BASE) if _is_local(url)]
    if not (settings.USE_SANDBOX or local):
        return []
    return [
        Warning(
            "The provider is the built-in sandbox or a local address: "
            + (", ".join(local) or "no KIE_API_KEY is set")
            + ".",
            hint="Set KIE_API_KEY, and KIE_API_BASE / KIE_UPLOAD_BASE to the provider's hosts.",
            id="imagereview.W003",
        )
    ]


@register(Tags.security, deploy=True)
def check_default_secret_key(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    if settings.SECRET_KEY != settings.INSECURE_SECRET_KEY:
        return []
    return [
        Error(
            "SECRET_KEY is the development default written in the source.",
            hint="Set SECRET_KEY to a random value of 50 or more characters.",
            id="imagereview.E001",
        )
    ]


@register(Tags.security, deploy=True)
def check_demo_passwords(app_configs: object, **kwargs: object) -> list[CheckMessage]:
    """Demo accounts that still open with the password printed by seed_demo."""
    names = {username: password for username, password, *_ in DEMO_ACCOUNTS}
    try:
        users = list(get_user_model().objects.filter(username__in=names, is_active=True))
    except DatabaseError:
        return []  # no database yet: nothing to sign in to either
    open_accounts = sorted(u.username for u in users if u.check_password(names[u.username]))
    if not open_accounts:
        return []
    return [
        Error(
            f"Demo accounts with their published passwords: {', '.join(open_accounts)}.",
            hint="Delete them, disable them, or set new passwords (manage.py changepassword).",
            id="imagereview.E002",
        )
    ]
