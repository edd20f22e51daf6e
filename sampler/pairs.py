"""Image pairs for annotators: train pairs (two seeds, one checkpoint) and eval pairs (parent vs child)."""

import imagehash

from sampler.generate import derived_seed, generate
from sampler.loading import PipelineCache
from sampler.spec import GeneratedImage, ModelSpec, PairRequest, SampledPair, SampleParams  # noqa: F401 - re-exported

# Perceptual-hash distance (of 64 bits) at or below which two images are near-identical.
NEAR_DUPLICATE_BITS = 4


def phash_distance(a: GeneratedImage, b: GeneratedImage) -> int:
    from io import BytesIO

    from PIL import Image

    return imagehash.phash(Image.open(BytesIO(a.png))) - imagehash.phash(Image.open(BytesIO(b.png)))


def train_seeds(seed: int, attempt: int) -> tuple[int, int]:
    """Seeds of a train pair: the request's own seed and a partner; a retry derives both afresh."""
    if attempt == 0:
        return seed, derived_seed(seed, 1)
    return derived_seed(seed, attempt, 0), derived_seed(seed, attempt, 1)


def sample_train_pairs(
    cache: PipelineCache,
    spec: ModelSpec,
    requests: list[PairRequest],
    params: SampleParams,
    *,
    max_attempts: int = 3,
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS,
) -> list[SampledPair]:
    """Both images of each pair from one batched call; near-identical pairs are made again with new seeds
    (up to `max_attempts`), and dropped if they stay alike."""
    pipeline = cache.get(spec)
    model = {"base": spec.base_path, "loras": list(spec.lora_paths)}
    done: list[SampledPair] = []
    pending = list(requests)
    for attempt in range(max_attempts):
        if not pending:
            break
        seeds = [s for r in pending for s in train_seeds(r.seed, attempt)]
        prompts = [r.prompt for r in pending for _ in range(2)]
        images = generate(pipeline, prompts=prompts, seeds=seeds, params=params, model=model)
        retry = []
        for index, request in enumerate(pending):
            a, b = images[2 * index], images[2 * index + 1]
            if phash_distance(a, b) <= near_duplicate_bits:
                retry.append(request)
            else:
                done.append(SampledPair(request, a, b, attempts=attempt + 1))
        pending = retry
    order = {r: i for i, r in enumerate(requests)}
    return sorted(done, key=lambda pair: order[pair.request])


def sample_eval_pairs(
    cache: PipelineCache, parent: ModelSpec, child: ModelSpec, requests: list[PairRequest], params: SampleParams
) -> list[SampledPair]:
    """Image A from the parent, image B from the child, same prompt and seed; the child's chain extends the
    parent's, so one loaded pipeline serves both by switching its newest adapter off and on."""
    prompts, seeds = [r.prompt for r in requests], [r.seed for r in requests]
    child_images = generate(cache.get(child), prompts=prompts, seeds=seeds, params=params,
                            model={"base": child.base_path, "loras": list(child.lora_paths)})
    parent_images = generate(cache.get(parent), prompts=prompts, seeds=seeds, params=params,
                             model={"base": parent.base_path, "loras": list(parent.lora_paths)})
    return [SampledPair(r, a, b) for r, a, b in zip(requests, parent_images, child_images, strict=True)]


def sample_images(cache: PipelineCache, spec: ModelSpec, requests: list[PairRequest],
                  params: SampleParams) -> list[GeneratedImage]:
    """One image per request from one checkpoint (the child's and the base's sides of a child-vs-base pair)."""
    if not requests:
        return []
    return generate(cache.get(spec), prompts=[r.prompt for r in requests], seeds=[r.seed for r in requests],
                    params=params, model={"base": spec.base_path, "loras": list(spec.lora_paths)})
