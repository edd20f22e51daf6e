"""Top-level URL routes."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate.views import not_found, serve_media

# A JSON 404 under /api/ (e.g. /api/v1/rounds/abc/ matches no route), Django's page elsewhere.
handler404 = not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("annotate.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file, so the page needs no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # The same JSON 404 with DEBUG on (the demo), where Django answers an unmatched path with its HTML debug page
    # instead of handler404; paths without their final slash still get Django's redirect to the slashed one.
    re_path(r"^api/.*/$", not_found, {"exception": None}),
    re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.+)$", serve_media, name="media"),
    path("", include("frontend.urls")),
]
