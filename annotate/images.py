"""Storing image files: content-addressed, verified by Pillow, recorded with their sampling parameters."""

import hashlib
import io
from collections.abc import Callable

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotate.models import Checkpoint, Image, Prompt


def image_store(
    *,
    prompt: Prompt | None = None,
    prompt_id: int | None = None,
    data: bytes,
    checkpoint: Checkpoint | None = None,
    seed: int | None = None,
    params: dict | None = None,
    diagnostics: dict | None = None,
    model_name: str = "",
    on_write: Callable[[str], None] | None = None,
) -> Image:
    """An Image row for the encoded file `data` (PNG, JPEG or WebP); the file is written once per content,
    and `on_write` hears the name of a file this call wrote (so a failed import can take it back)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as decoded:
        width, height = decoded.size
        extension = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[decoded.format]
    sha256 = hashlib.sha256(data).hexdigest()
    image = Image(
        prompt=prompt,
        prompt_id=prompt_id if prompt is None else prompt.pk,
        checkpoint=checkpoint,
        seed=seed,
        params=params or {},
        sha256=sha256,
        width=width,
        height=height,
        diagnostics=diagnostics or {},
        model_name=model_name,
    )
    name = image.file.field.generate_filename(image, f"image{extension}")
    if default_storage.exists(name):
        image.file.name = name
    else:
        image.file.save(name, ContentFile(data), save=False)
        if on_write:
            on_write(image.file.name)
    image.save()
    return image
