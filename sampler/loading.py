"""Loading a diffusers pipeline for a checkpoint (base folder + LoRA chain), cached per worker process."""

import gc
import logging
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from sampler.model_index import KINDS, ModelLoadError, model_kind  # noqa: F401 - re-exported
from sampler.spec import ModelSpec
from trainer.lora_files import legacy_metadata

logger = logging.getLogger(__name__)


def default_device() -> tuple[torch.device, torch.dtype]:
    """CUDA in bfloat16 where there is a GPU, else the CPU in float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def load_pipeline(spec: ModelSpec, *, device: torch.device | None = None, dtype: torch.dtype | None = None):
    """The base pipeline with every LoRA of the chain loaded and active at weight 1."""
    model_kind(spec.base_path)
    default = default_device()
    device, dtype = device or default[0], dtype or default[1]
    try:
        pipeline = DiffusionPipeline.from_pretrained(spec.base_path, dtype=dtype)
    except Exception as exc:  # diffusers raises many types for a broken folder
        raise ModelLoadError(f"Could not load the model at {spec.base_path}: {exc}") from exc
    names = []
    for index, lora in enumerate(spec.lora_paths):
        name = f"chisel_{index}"
        try:
            _load_lora(pipeline, lora, name)
        except Exception as exc:
            raise ModelLoadError(f"Could not load the LoRA at {lora}: {exc}") from exc
        names.append(name)
    if names:
        # load_lora_weights only warns when a file matches no module; refuse a chain that loaded nothing.
        loaded = {n for adapters in pipeline.get_list_adapters().values() for n in adapters}
        missing = [lora for name, lora in zip(names, spec.lora_paths) if name not in loaded]
        if missing:
            raise ModelLoadError(f"These LoRA folders matched no module of the model: {', '.join(missing)}")
        pipeline.set_adapters(names, adapter_weights=[1.0] * len(names))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def _load_lora(pipeline, lora: str, name: str) -> None:
    """diffusers reads the LoRA's rank and alpha from its file; a folder trained before the files carried them gets
    them from its training.json, so it too loads at the strength it was trained at."""
    legacy = legacy_metadata(Path(lora))
    if legacy is None:
        pipeline.load_lora_weights(lora, adapter_name=name)
        return
    component, weights, metadata = legacy
    getattr(pipeline, component).load_lora_adapter(weights, prefix=component, adapter_name=name, metadata=metadata)


class PipelineCache:
    """Holds one loaded pipeline per process. Asking for a checkpoint whose LoRA chain is a prefix of the
    loaded one (a parent, while its child is loaded) switches adapters instead of loading again."""

    def __init__(self) -> None:
        self.loaded: ModelSpec | None = None
        self.pipeline = None

    def get(self, spec: ModelSpec):
        if not self._serves(spec):
            self.clear()
            logger.info("Loading %s with %d LoRA(s)", spec.base_path, len(spec.lora_paths))
            self.pipeline = load_pipeline(spec)
            self.loaded = spec
        self._activate(len(spec.lora_paths))
        return self.pipeline

    def _serves(self, spec: ModelSpec) -> bool:
        return (
            self.loaded is not None
            and self.loaded.base_path == spec.base_path
            and self.loaded.lora_paths[: len(spec.lora_paths)] == spec.lora_paths
        )

    def _activate(self, count: int) -> None:
        if not self.loaded.lora_paths:
            return
        if count == 0:
            self.pipeline.disable_lora()
        else:
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([f"chisel_{i}" for i in range(count)], adapter_weights=[1.0] * count)

    def clear(self) -> None:
        self.pipeline, self.loaded = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


pipelines = PipelineCache()
