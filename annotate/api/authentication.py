"""Token authentication for the API: one query joining token and user, remembered for a few seconds per process."""

import copy
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models.signals import post_delete, post_save
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from annotate.tokens import token_expired

# How long a process trusts what it read about a token. Within the process that makes the change, saving
# a user or deleting a token takes effect at once (signals below); other processes see it within this time.
TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000

_User = get_user_model()
_USER_BY_TOKEN = (
    f"SELECT u.*, t.created AS token_created FROM {_User._meta.db_table} u"
    f" JOIN {Token._meta.db_table} t ON t.user_id = u.{_User._meta.pk.column}"
    " WHERE t.key = %s"
)
_cache: dict[str, tuple[AbstractBaseUser | None, float]] = {}


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>`, at one plain query per key and process every TTL_SECONDS."""

    def authenticate_credentials(self, key: str):
        now = time.monotonic()
        hit = _cache.get(key)
        if hit is not None and hit[1] > now:
            user = hit[0]
        else:
            user = next(iter(_User._default_manager.raw(_USER_BY_TOKEN, [key])), None)
            if len(_cache) >= MAX_ENTRIES:
                _cache.clear()
            _cache[key] = (user, now + TTL_SECONDS)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if token_expired(created=user.token_created):
            raise exceptions.AuthenticationFailed("Token expired: ask a lead for a new one.")
        # A copy per request: the views may set attributes on request.user, and threads share the cache.
        return copy.copy(user), key


def forget(*, user_id: int | None = None, key: str | None = None) -> None:
    """Drop cached entries of a token or of a user's tokens."""
    if key is not None:
        _cache.pop(key, None)
    if user_id is not None:
        for cached_key, (user, _) in list(_cache.items()):
            if user is not None and user.pk == user_id:
                _cache.pop(cached_key, None)


def _user_saved(sender, instance, **kwargs) -> None:
    forget(user_id=instance.pk)


def _token_deleted(sender, instance, **kwargs) -> None:
    forget(key=instance.key)


post_save.connect(_user_saved, sender=_User, dispatch_uid="chisel-token-cache-user-saved")
post_delete.connect(_user_saved, sender=_User, dispatch_uid="chisel-token-cache-user-deleted")
post_delete.connect(_token_deleted, sender=Token, dispatch_uid="chisel-token-cache-token-deleted")
