"""The layouts a LoRA file can be exported in, and the export's error (no torch: the admin lists them)."""

FORMATS = ("diffusers", "kohya", "comfyui")


class ExportError(ValueError):
    """A LoRA that cannot be written in the asked format; the message says why."""
