"""DRF permissions, deferring to the access funnel."""

from rest_framework.permissions import BasePermission

from annotate.access import user_is_lead


class IsLead(BasePermission):
    message = "Only research leads may use this endpoint."

    def has_permission(self, request, view) -> bool:
        return user_is_lead(request.user)
