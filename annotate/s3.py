"""The bucket as Django's default storage (CHISEL_STORAGE=s3), with image URLs that point at the app, not the bucket."""

from urllib.parse import urljoin

from django.conf import settings
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage


class AppServedS3Storage(S3Storage):
    """S3Storage whose `url(name)` is MEDIA_URL + name, as with local files: annotate.views.serve_media checks who
    asks and streams the object, so the bucket stays private and an annotator's URL says nothing and expires never
    (presigned URLs would carry the key, an expiry and a signature, and skip the per-request check)."""

    def url(self, name, parameters=None, expire=None, http_method=None):
        return urljoin(settings.MEDIA_URL, filepath_to_uri(name))

    def open_stream(self, name):
        """The object's body as a stream, in one GET (`open` asks with a HEAD first and downloads through
        s3transfer); FileNotFoundError when there is no such object."""
        from botocore.exceptions import ClientError
        from storages.utils import clean_name

        key = self._normalize_name(clean_name(name))
        try:
            return self.connection.meta.client.get_object(Bucket=self.bucket_name, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"No such file: {name}") from exc
            raise
