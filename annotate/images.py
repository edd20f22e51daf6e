"""Storing image files: content-addressed, verified by Pillow, stripped of provenance, recorded with their
sampling parameters."""

import hashlib
import io
import struct
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
    and `on_write` hears the name of a file this call wrote (so a failed import can take it back).

    A PNG is stored without its ancillary chunks (the sampler's `chisel` text chunk names prompt, seed, base
    path and LoRA chain: an annotator who saved an eval image would know the child's side); `sha256` is of the
    stored bytes."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as decoded:
        width, height = decoded.size
        extension = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[decoded.format]
    if extension == ".png":
        data = png_strip(data)  # the record stays in `params`; the served file names no model, seed or path
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEPT_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})  # pixels and nothing else


def png_strip(data: bytes) -> bytes:
    """The PNG `data` with only the chunks that make its pixels (IHDR, PLTE, tRNS, IDAT, IEND): text, time,
    physical size, colour profile and every private chunk are dropped. The pixels are unchanged (no re-encode);
    bytes that are not a well-formed PNG come back as they are."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    kept, offset = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, end = data[offset + 4:offset + 8], offset + 12 + length
        if end > len(data):
            return data
        if kind in PNG_KEPT_CHUNKS:
            kept.append(data[offset:end])
        offset = end
        if kind == b"IEND":
            return b"".join(kept)
    return data
