"""Turns domain errors into JSON answers with a stable `code` and a readable `detail`."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"code": exc.code, "detail": exc.message}, status=exc.status)
    return drf_exception_handler(exc, context)
