"""Turns domain errors into JSON answers with a stable `code` and a readable `detail`."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.errors import DomainError

_CODES = {403: "permission_denied", 404: "not_found"}  # for Django's PermissionDenied and Http404


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"code": exc.code, "detail": exc.message}, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        # DRF's own errors (401, 403, 404, 405, 415, 429, parse errors) get a `code` like the domain's.
        code = exc.get_codes() if hasattr(exc, "get_codes") else _CODES.get(response.status_code, "error")
        response.data = {"code": str(code), "detail": response.data["detail"]}
    return response
