"""Simulated annotators over the real HTTP API (annotate/management/commands/simulate_annotators.py)."""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from annotate import services
from annotate.images import image_store
from annotate.models import Judgement, Pair, Prompt, Round
from sampler.toy.oracles import judge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def grey(level: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (level, level, level)).save(out, format="PNG")
    return out.getvalue()


def brightness(image) -> float:
    with default_storage.open(image.file.name, "rb") as handle:
        return float(np.asarray(Image.open(handle).convert("L")).mean())


def test_dark_oracle_annotators_judge_every_pair_for_the_darker_image(live_server):
    taste = services.taste_create(slug="sim")
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=2)
    for index in range(6):
        prompt = Prompt.objects.create(text=f"a grey square {index}")
        levels = (40 + 20 * index, 200 - 10 * index)  # never equal; the darker one is A or B in turn
        a, b = (image_store(prompt=prompt, data=grey(level)) for level in (levels if index % 2 else levels[::-1]))
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, overlap=2)
    out = io.StringIO()
    call_command("simulate_annotators", "--taste", "sim", "--oracle", "dark", "--annotators", "2", "--until-idle",
                 "--idle", "1", "--url", live_server.url, stdout=out)
    assert "12 judgements by 2 simulated 'dark' annotators" in out.getvalue()
    for judgement in Judgement.objects.select_related("pair__image_a", "pair__image_b"):
        darker = "a" if brightness(judgement.pair.image_a) < brightness(judgement.pair.image_b) else "b"
        assert judgement.choice == darker


def test_oracles_with_noise_and_the_random_control():
    import random

    dark, light = Image.new("RGB", (8, 8), (10, 10, 10)), Image.new("RGB", (8, 8), (200, 200, 200))
    rng = random.Random(0)
    assert judge("dark", dark, light, rng=rng) == "left" and judge("dark", light, dark, rng=rng) == "right"
    assert judge("dark", dark, dark, rng=rng) == "tie"
    noisy = [judge("dark", dark, light, noise=0.5, rng=rng) for _ in range(400)]
    assert 0.65 < noisy.count("left") / 400 < 0.85  # half the answers are coins: ~75% right
    control = [judge("random", dark, light, rng=rng) for _ in range(400)]
    assert 0.4 < control.count("left") / 400 < 0.6
    with pytest.raises(ValueError, match="Unknown oracle"):
        judge("pretty", dark, light, rng=rng)
