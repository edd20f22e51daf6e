"""Plain data crossing the sampler's boundary: what to load, how to sample, what came out."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint as files: a diffusers base model folder and the LoRA folders applied on top, oldest first."""

    base_path: str
    lora_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class SampleParams:
    """Everything besides prompt and seed that decides the pixels."""

    steps: int = 28
    guidance: float = 3.5
    width: int = 1024
    height: int = 1024
    max_sequence_length: int | None = None  # FLUX's T5 length; None keeps the pipeline's default (512)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GeneratedImage:
    """One image: the lossless PNG, how it was made, and its diagnostics."""

    prompt: str
    seed: int
    params: dict
    png: bytes
    width: int
    height: int
    diagnostics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PairRequest:
    """One pair to make: a prompt and the seed that names it (the idempotency key with the round)."""

    prompt: str
    seed: int


@dataclass(frozen=True)
class SampledPair:
    request: PairRequest
    image_a: GeneratedImage
    image_b: GeneratedImage
    attempts: int = 1
