"""Checking untrusted image bytes: only PNG, JPEG and WebP, no decompression bombs, fully decodable."""

import io

from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 4096 * 4096


class ImageRejected(ValueError):
    """Bytes that are not an acceptable image; the message says why."""


def check_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, format) of `data` once it is known to be a whole, acceptable image."""
    if not data:
        raise ImageRejected("is empty")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(f"is {width}×{height} pixels, over the limit of {max_pixels:,} pixels")
            image.load()  # header alone can lie: decode every pixel
            return width, height, image.format
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.UnidentifiedImageError) as exc:
        raise ImageRejected(f"is not a readable {'/'.join(FORMATS)} image ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"is not a readable {'/'.join(FORMATS)} image ({exc})") from exc
