"""The toy world's generator and checkers: determinism, and the checkers' accuracy on the generator's own labels."""

import numpy as np
import pytest
from PIL import Image

from sampler.toy import checkers, world

# Seeds of their own, far from the pretraining and evaluation seeds.
SEEDS = range(2_000_000_000, 2_000_000_400)


@pytest.fixture(scope="module")
def labelled():
    return [world.sample(seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def readings(labelled):
    return [checkers.read(image) for image, _ in labelled]


def test_generator_is_deterministic():
    for seed in (0, 7, 123_456):
        first, labels = world.sample(seed)
        again, labels_again = world.sample(seed)
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert labels == labels_again
    assert not np.array_equal(np.asarray(world.sample(1)[0]), np.asarray(world.sample(2)[0]))


def test_caption_fixes_named_properties_only():
    image, labels = world.draw("a blue triangle", seed=5)
    assert (labels["shape"], labels["colour"], labels["caption"]) == ("triangle", "blue", "a blue triangle")
    assert image.size == (64, 64) and image.mode == "RGB"
    # The same seed gives the same background whatever the caption names.
    _, other = world.draw("a red circle", seed=5)
    assert {k: other[k] for k in ("texture", "tint", "brightness")} == {
        k: labels[k] for k in ("texture", "tint", "brightness")
    }


def test_spec_fixes_unnamed_properties():
    _, labels = world.draw(world.Spec(shape="square", colour="green", texture="checks", tint="cool"), seed=9)
    assert (labels["texture"], labels["background"], labels["tint"]) == ("checks", "textured", "cool")


def test_samples_cover_every_mode(labelled):
    labels = [meta for _, meta in labelled]
    assert {meta["shape"] for meta in labels} == set(world.SHAPES)
    assert {meta["colour"] for meta in labels} == set(world.COLOURS)
    assert {meta["texture"] for meta in labels} == {"flat", *world.TEXTURES}
    assert {meta["tint"] for meta in labels} == set(world.TINTS)
    assert abs(np.mean([meta["background"] == "flat" for meta in labels]) - world.FLAT_SHARE) < 0.08


def test_caption_words_are_in_the_vocabulary():
    for caption in world.captions():
        assert set(caption.split()) <= set(world.WORDS)


@pytest.mark.parametrize("prop", ["shape", "colour", "background", "tint"])
def test_checkers_read_the_generators_labels(labelled, readings, prop):
    accuracy = np.mean([getattr(reading, prop) == meta[prop] for reading, (_, meta) in zip(readings, labelled)])
    assert accuracy >= 0.95, f"{prop}: {accuracy:.1%}"


def test_adherence_on_generator_images(labelled):
    accuracy = np.mean([checkers.adherence(image, meta["caption"]) for image, meta in labelled])
    assert accuracy >= 0.95
    image, meta = labelled[0]
    wrong = next(c for c in world.captions() if world.parse_caption(c).shape != meta["shape"])
    assert not checkers.adherence(image, wrong)


def test_flatness_is_graded_and_separates_flat_from_textured(labelled, readings):
    flat = [r.flatness for r, (_, meta) in zip(readings, labelled) if meta["background"] == "flat"]
    textured = [r.flatness for r, (_, meta) in zip(readings, labelled) if meta["background"] == "textured"]
    assert all(0.0 <= score <= 1.0 for score in flat + textured)
    assert min(flat) > max(textured)


def test_warmth_has_the_sign_of_the_tint(labelled, readings):
    for reading, (_, meta) in zip(readings, labelled):
        assert (reading.warmth > 0) == (meta["tint"] == "warm")


def test_checkers_accept_arrays_and_other_sizes():
    image, meta = world.draw("a yellow square", seed=11, size=128)
    assert image.size == (128, 128)
    for form in (image, np.asarray(image), np.asarray(image).astype(np.float32) / 255.0):
        reading = checkers.read(form)
        assert (reading.shape, reading.colour) == ("square", "yellow")


def test_blank_image_has_no_shape():
    reading = checkers.read(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert reading.shape is None and reading.colour is None
    assert reading.background == "flat" and reading.flatness == pytest.approx(1.0)
    assert reading.spread == pytest.approx(0.0)
    assert not checkers.adherence(Image.new("RGB", (64, 64), (128, 128, 128)), "a red circle")


def test_flat_and_textured_oracles_disagree_and_always_left_takes_the_left(labelled):
    import random

    from sampler.toy.oracles import judge

    flat = next(image for image, meta in labelled if meta["background"] == "flat")
    textured = next(image for image, meta in labelled if meta["background"] == "textured")
    rng = random.Random(0)
    assert judge("flat", flat, textured, rng=rng) == "left" and judge("flat", textured, flat, rng=rng) == "right"
    assert judge("textured", flat, textured, rng=rng) == "right"
    assert {judge("always_left", a, b, rng=rng) for a, b in [(flat, textured), (textured, flat)]} == {"left"}


def test_dark_oracle_ties_a_move_below_webers_fraction_and_sees_one_above():
    import random

    from sampler.toy.oracles import judge

    grey = Image.new("RGB", (64, 64), (200, 200, 200))
    slightly_darker = Image.new("RGB", (64, 64), (198, 198, 198))  # 1% darker: no person could rank these
    darker = Image.new("RGB", (64, 64), (192, 192, 192))  # 4% darker
    rng = random.Random(0)
    assert judge("dark", grey, slightly_darker, rng=rng) == "tie"
    assert judge("dark", grey, darker, rng=rng) == "right" and judge("dark", darker, grey, rng=rng) == "left"


def test_every_scored_taste_has_a_rule_for_what_its_annotator_notices():
    from sampler.toy.oracles import NOTICEABLE, SCORES

    assert set(NOTICEABLE) == set(SCORES)
