"""Non-API views of the annotation app: authenticated, long-cached image files."""

import io
import mimetypes
from pathlib import Path

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest
from django.utils._os import safe_join
from django.views.decorators.http import require_safe


@require_safe
def serve_media(request: HttpRequest, path: str) -> FileResponse:
    """An image file from storage, for logged-in users (session or token) only.

    Stored names are content-addressed, so the browser may keep a file for a year without asking again. A PNG
    goes out with its pixel chunks only (no sampling record), and no header says when it was made.
    """
    if not _authenticated(request):
        return redirect_to_login(request.get_full_path())
    try:
        full_path = Path(safe_join(settings.MEDIA_ROOT, path))
    except Exception as exc:  # SuspiciousFileOperation on '..' and absolute paths
        raise Http404("No such file.") from exc
    if not full_path.is_file():
        raise Http404("No such file.")
    if full_path.suffix == ".png":  # files stored before image_store stripped them may still carry a record
        from annotate.images import png_strip

        response = FileResponse(io.BytesIO(png_strip(full_path.read_bytes())), content_type="image/png")
    else:
        response = FileResponse(full_path.open("rb"), content_type=mimetypes.guess_type(full_path.name)[0])
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _authenticated(request: HttpRequest) -> bool:
    if request.user.is_authenticated:
        return True
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    try:
        return TokenAuthentication().authenticate(request) is not None
    except AuthenticationFailed:
        return False
