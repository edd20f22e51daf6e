"""Download a checkpoint's LoRA from its admin page, in diffusers, kohya or ComfyUI layout."""

import tempfile
from pathlib import Path

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html_join

from annotate.lora_exports import checkpoint_lora_export
from annotate.models import Checkpoint
from trainer.lora_formats import FORMATS, ExportError


class CheckpointLoraDownloads:
    """Adds `<checkpoint id>/lora/<format>/` to CheckpointAdmin, and links to it on the change page."""

    admin_site: admin.AdminSite

    def get_urls(self):
        return [
            path("<int:checkpoint_id>/lora/<str:fmt>/", self.admin_site.admin_view(self.lora_download),
                 name="annotate_checkpoint_lora"),
            *super().get_urls(),
        ]

    @admin.display(description="LoRA file")
    def lora_downloads(self, checkpoint: Checkpoint) -> str:
        if checkpoint.pk is None or not (checkpoint.lora_path or checkpoint.parent_id):
            return "—"
        return format_html_join(" · ", '<a href="{}">{}</a>', (
            (reverse("admin:annotate_checkpoint_lora", args=[checkpoint.pk, fmt]), fmt) for fmt in FORMATS
        ))

    def lora_download(self, request: HttpRequest, checkpoint_id: int, fmt: str) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        checkpoint = get_object_or_404(Checkpoint.objects.select_related("taste"), pk=checkpoint_id)
        if fmt not in FORMATS:
            raise Http404(f"Unknown LoRA format {fmt!r}.")
        folder = Path(tempfile.mkdtemp(prefix="chisel-lora-"))
        name = f"{checkpoint.taste.slug}-checkpoint-{checkpoint.pk}-{fmt}.safetensors"
        try:
            written = checkpoint_lora_export(checkpoint=checkpoint, fmt=fmt, out=folder / name)
        except ExportError as exc:
            raise Http404(str(exc)) from exc
        handle = written.open("rb")
        written.unlink()  # the open handle keeps the bytes until the response is sent
        folder.rmdir()
        return FileResponse(handle, as_attachment=True, filename=name, content_type="application/octet-stream")
