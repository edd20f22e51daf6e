"""A checkpoint's LoRA chain as one file that other tools read (the conversion itself is trainer/lora_export.py)."""

from pathlib import Path

from annotate.models import Checkpoint
from annotate.sampling import checkpoint_spec
from trainer.lora_formats import ExportError


def lora_source(target: str) -> list[Path]:
    """The LoRA chain named by `target`: a checkpoint id (its chain, oldest first), or a LoRA folder or file."""
    if target.isdigit():
        checkpoint = Checkpoint.objects.filter(pk=int(target)).first()
        if checkpoint is None:
            raise ExportError(f"There is no checkpoint {target}.")
        return [Path(p) for p in checkpoint_spec(checkpoint).lora_paths]
    path = Path(target)
    if not path.exists():
        raise ExportError(f"{target} is neither a checkpoint id nor an existing LoRA folder or file.")
    return [path]


def checkpoint_lora_export(*, checkpoint: Checkpoint, fmt: str, out: Path) -> Path:
    """Write `checkpoint` (its whole LoRA chain, merged exactly) as one safetensors file in `fmt`."""
    from trainer.lora_export import export_lora  # torch: only where a LoRA is converted

    try:
        return export_lora([Path(p) for p in checkpoint_spec(checkpoint).lora_paths], out, fmt)
    except (OSError, ValueError) as exc:
        raise ExportError(str(exc)) from exc
