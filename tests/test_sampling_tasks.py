"""Rounds filled with sampled pairs by a real Celery worker on Redis (annotate/sampling.py, tasks.py)."""

import pytest
from django.core.files.storage import default_storage

from annotate import services
from annotate.models import BaseModel, Checkpoint, Image, Pair, Prompt, Round
from annotate.tasks import refill_round, sample_pairs
from tests.conftest import wait_until
from tests.models import build_tiny_flux

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle", "an red square"]


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("flux") / "flux")


def make_sampling_round(path, *, quota=20, batch=10) -> Round:
    taste = services.taste_create(slug=f"sampling-{Round.objects.count()}")
    base = BaseModel.objects.create(
        name=f"tiny-{taste.slug}", kind="flux", path=str(path), default_steps=3, default_guidance=3.5,
        default_width=64, default_height=64, default_max_sequence_length=32,
    )
    checkpoint = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    prompts = [Prompt.objects.create(text=text) for text in PROMPTS]
    return Round.objects.create(
        taste=taste, number=1, parent_checkpoint=checkpoint, state=Round.State.SAMPLING, pair_quota=quota,
        overlap=2, sampling_config={"low_water": quota, "batch": batch, "prompt_ids": [p.pk for p in prompts]},
        eval_pair_quota=2,
    )


@pytest.mark.integration
def test_a_worker_fills_a_round_with_20_pairs(celery_worker_process, tiny_flux_dir):
    round_ = make_sampling_round(tiny_flux_dir)
    assert refill_round(round_.pk) == 1
    # 20 pairs to annotate, and 2 more (as many as the round's eval pairs) held back for its evaluation phase.
    wait_until(lambda: Pair.objects.filter(round=round_).count() >= 22, timeout=240, interval=1, what="22 pairs")
    round_.refresh_from_db()
    assert round_.state == Round.State.ANNOTATING
    pairs = Pair.objects.filter(round=round_).select_related("image_a", "image_b", "prompt")
    assert pairs.count() == 22 and round_.sample_cursor == 22
    assert sorted(p.seed for p in pairs) == list(range(22))
    assert sorted(p.seed for p in pairs if p.held_back) == [1, 3]
    for pair in pairs:
        for image in (pair.image_a, pair.image_b):
            assert image.checkpoint_id == round_.parent_checkpoint_id and image.params["prompt"] == pair.prompt.text
            assert set(image.diagnostics) >= {"brightness", "saturation", "rgb_entropy", "sharpness", "flat_share"}
            assert default_storage.exists(image.file.name) and (image.width, image.height) == (64, 64)
        assert pair.image_a.seed != pair.image_b.seed
    # The quota is met: no more sampling.
    assert refill_round(round_.pk) == 0

    # Running a task again for pairs that exist creates nothing, not even images.
    images_before = Image.objects.count()
    assert sample_pairs(round_.pk, [[pairs[0].prompt_id, pairs[0].seed], [pairs[1].prompt_id, pairs[1].seed]]) == 0
    assert Pair.objects.filter(round=round_).count() == 22 and Image.objects.count() == images_before


@pytest.mark.integration
def test_a_broken_model_fails_the_round_with_its_reason(celery_worker_process, tmp_path):
    round_ = make_sampling_round(tmp_path / "missing-model", quota=4, batch=4)
    refill_round(round_.pk)
    wait_until(lambda: Round.objects.get(pk=round_.pk).state == Round.State.FAILED, timeout=120, what="the failure")
    round_.refresh_from_db()
    assert "model_index.json is missing" in round_.error and "Sampling failed" in round_.error
    assert not Pair.objects.filter(round=round_).exists() and round_.sampling_until is None


@pytest.mark.django_db
def test_storing_the_same_sampled_pairs_twice_creates_them_once(tiny_flux_dir):
    from annotate import sampling
    from sampler.loading import PipelineCache
    from sampler.pairs import sample_train_pairs

    round_ = make_sampling_round(tiny_flux_dir, quota=4, batch=2)
    job = sampling.round_reserve_samples(round_id=round_.pk)
    assert job is not None and len(job.requests) == 2
    assert sampling.round_reserve_samples(round_id=round_.pk) is None  # held by the job
    spec, params, requests = sampling.round_sampling_inputs(round_id=round_.pk, requests=job.requests)
    sampled = sample_train_pairs(PipelineCache(), spec, requests, params)
    assert sampling.round_store_pairs(round_id=round_.pk, requests=job.requests, sampled=sampled) == 2
    assert sampling.round_store_pairs(round_id=round_.pk, requests=job.requests, sampled=sampled) == 0
    assert Pair.objects.filter(round=round_).count() == 2
