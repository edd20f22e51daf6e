"""Request rates per scope (claims, submissions, exports, login), counted in Django's cache (Redis in production)."""

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle


class ChiselScopedThrottle(ScopedRateThrottle):
    """DRF's scoped throttle per user, with the rates read from CHISEL_THROTTLE_RATES at each request."""

    def get_rate(self) -> str | None:
        return settings.CHISEL_THROTTLE_RATES.get(self.scope)


class LoginThrottle(SimpleRateThrottle):
    """Login form posts per client address (django-axes separately locks out after failed ones)."""

    scope = "login"

    def get_rate(self) -> str | None:
        return settings.CHISEL_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
