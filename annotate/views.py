"""Non-API views of the annotation app: image files for those who may see them, long-cached; the 404 answer."""

import io
import mimetypes
from pathlib import PurePosixPath

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from django.views.defaults import page_not_found

from annotate.access import access_image_file


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 answers: the API's JSON error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": f"There is nothing at {request.path}."}, status=404)
    return page_not_found(request, exception)


@require_safe
def serve_media(request: HttpRequest, path: str) -> FileResponse:
    """An image file from storage, for leads and for the annotators of a taste with a pair showing it.

    Stored names are content-addressed, so the browser may keep a file for a year without asking again. A PNG
    goes out with its pixel chunks only (no sampling record), and no header says when it was made.
    """
    user = _authenticated_user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    if not access_image_file(user=user, name=path):
        raise Http404("No such file.")  # the same answer as a missing file: names are not confirmed
    # Through the storage API: this host's MEDIA_ROOT, or the bucket (CHISEL_STORAGE=s3), streamed by this
    # process so that the URL an annotator holds stays opaque and checked on every request.
    try:
        opener = getattr(default_storage, "open_stream", None)  # the bucket's one-request read (annotate/s3.py)
        handle = opener(path) if opener else default_storage.open(path, "rb")
    except (OSError, SuspiciousOperation) as exc:  # missing; '..' and absolute paths
        raise Http404("No such file.") from exc
    if PurePosixPath(path).suffix == ".png":  # files stored before image_store stripped them may still carry a record
        from annotate.images import png_strip

        with handle:
            response = FileResponse(io.BytesIO(png_strip(handle.read())), content_type="image/png")
    else:
        response = FileResponse(handle, content_type=mimetypes.guess_type(path)[0])
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _authenticated_user(request: HttpRequest):
    if request.user.is_authenticated:
        return request.user
    from rest_framework.exceptions import AuthenticationFailed

    from annotate.api.authentication import CachedTokenAuthentication

    try:
        found = CachedTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None
