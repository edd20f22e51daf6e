"""manage.py export_lora CHECKPOINT --format diffusers|kohya|comfyui --out FILE"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.lora_exports import lora_source
from trainer.lora_export import FORMATS, export_lora


class Command(BaseCommand):
    help = ("Write a checkpoint's LoRA (its whole chain, merged) as one safetensors file for diffusers, kohya-style "
            "tools or ComfyUI. CHECKPOINT is a checkpoint id or a LoRA folder.")

    def add_arguments(self, parser):
        parser.add_argument("checkpoint", help="a checkpoint id, or a LoRA folder (a run's checkpoint/) or file")
        parser.add_argument("--format", choices=FORMATS, default="diffusers", dest="fmt")
        parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write (never replaced)")

    def handle(self, *args, checkpoint, fmt, out, **options):
        try:
            paths = lora_source(checkpoint)
            written = export_lora(paths, out, fmt)
        except (OSError, ValueError) as exc:  # ExportError, a missing or foreign file
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Wrote {written} ({fmt}, {len(paths)} LoRA(s) merged).")
