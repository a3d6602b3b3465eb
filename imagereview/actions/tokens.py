"""Personal API tokens: issued once in the clear, kept as a hash, scoped, revocable.

A token reads `ir_<prefix>_<secret>`. The prefix finds the row; the SHA-256 of the secret,
compared in constant time, proves it. The secret itself is never stored.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from imagereview.models import ApiToken

TOKEN_MARK = "ir"
# Writing last_used_at on every call would turn each read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class TokenRefused(Exception):
    """A token that does not open the API; the message says why, for its holder."""


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    *, user: AbstractBaseUser, name: str, scopes: Iterable[str]
) -> tuple[ApiToken, str]:
    """Create a token for `user`; return it and its text, which is shown this once only."""
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        secret_hash=_secret_hash(secret),
        scopes=[scope for scope in ApiToken.Scope.values if scope in set(scopes)],
    )
    return token, f"{TOKEN_MARK}_{prefix}_{secret}"


def revoke_token(*, token_id: int, user: AbstractBaseUser | None = None) -> ApiToken | None:
    """Revoke a token (of `user`, when given); revoking twice keeps the first time."""
    tokens = ApiToken.objects.filter(pk=token_id)
    if user is not None:
        tokens = tokens.filter(user=user)
    tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    return tokens.first()


def verify_token(text: str) -> ApiToken:
    """The live token `text` stands for, its last use noted; else TokenRefused."""
    mark, _, rest = text.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != TOKEN_MARK or not prefix or not secret:
        raise TokenRefused("This is not an imagereview API token (they start with ir_).")
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    expected = token.secret_hash if token else "0" * 64
    proven = hmac.compare_digest(_secret_hash(secret).encode(), expected.encode())
    if token is None or not proven:
        raise TokenRefused("This API token is not valid.")
    if token.revoked_at is not None:
        raise TokenRefused("This API token was revoked.")
    if not token.user.is_active:
        raise TokenRefused("The account of this API token is disabled.")
    _note_use(token)
    return token


def _note_use(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at and now - token.last_used_at < LAST_USED_GRANULARITY:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_GRANULARITY)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
