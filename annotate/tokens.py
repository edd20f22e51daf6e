"""API tokens: rotate (a new key, the old one refused at once), revoke, and the optional expiry."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token


def token_rotate(*, user: AbstractBaseUser) -> str:
    """Replace `user`'s API token (or give them one) and return the new key."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()  # post_delete drops the key from this process's cache
        return Token.objects.create(user=user).key


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete `user`'s API token; whether they had one. They get a new one only by rotation."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


def token_ttl() -> timedelta | None:
    """How long a token lives after it was made (CHISEL_TOKEN_TTL_DAYS); None: for ever."""
    days = settings.CHISEL_TOKEN_TTL_DAYS
    return timedelta(days=days) if days else None


def token_expired(*, created: datetime, now: datetime | None = None) -> bool:
    ttl = token_ttl()
    return ttl is not None and created + ttl <= (now or timezone.now())
