"""Requests refused before any view runs: NUL bytes in the URL (400) and bodies over the size limit (413)."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def _refusal(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class RequestGuardMiddleware:
    """No NUL byte reaches a query (PostgreSQL refuses them with an error); no oversized body is read.

    The size comes from Content-Length: multipart bodies (the launch form's prompt file) may reach
    CHISEL_MAX_UPLOAD_BYTES, every other body DATA_UPLOAD_MAX_MEMORY_SIZE.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # A NUL can reach the query string only percent-encoded; the path is already decoded.
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return _refusal(request, 400, "invalid", "The address may not contain NUL characters.")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refusal(request, 400, "invalid", "Content-Length is not a number.")
        multipart = request.content_type == "multipart/form-data"
        limit = settings.CHISEL_MAX_UPLOAD_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return _refusal(request, 413, "too_large", f"The request body may be at most {limit} bytes.")
        return self.get_response(request)


LOGIN_PATHS = ("/login/", "/admin/login/")


class LoginThrottleMiddleware:
    """At most CHISEL_THROTTLE_RATES["login"] login posts per client address; more get a 429 page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in LOGIN_PATHS:
            from annotate.api.throttles import LoginThrottle

            throttle = LoginThrottle()
            if not throttle.allow_request(request, None):
                response = render(request, "registration/lockout.html", {"throttled": True}, status=429)
                response["Retry-After"] = str(int(throttle.wait() or 60))
                return response
        return self.get_response(request)
