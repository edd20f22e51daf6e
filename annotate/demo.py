"""The demo world: the toy model sampling real pairs when it is built, else pairs drawn with Pillow."""

import io
import json
import random
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter

from annotate import services
from annotate.images import image_store
from annotate.launch_settings import QUOTAS
from annotate.models import BaseModel, Checkpoint, Pair, Prompt, Round, Taste

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (200, 40, 40), "blue": (40, 80, 210), "green": (40, 160, 70), "yellow": (225, 200, 40)}
DEMO_TASTE = "demo"
DEMO_ANNOTATORS = ("alice", "bob")
DEMO_LEAD = "lead"
DEMO_GUIDELINES = """\
Each image should show **the shape and colour the caption names**, on a background worth looking at.

- Prefer the image whose background has **texture**: grain, stripes, checks or clouds over a flat fill.
- A wrong shape or colour loses, however nice the background.
- If both are equally good, press `3` (tie); if both are wrong, `0` (both bad).

Hold `z` for a loupe on the same spot of both images; `f` flickers between them.
"""


def draw_shape(*, shape: str, colour: str, seed: int, size: int = 256) -> bytes:
    """A PNG of the named shape and colour on a background whose texture, tint and light vary with `seed`."""
    rng = random.Random(seed)
    tint = rng.choice([(235, 215, 190), (190, 210, 235), (215, 215, 215)])
    light = rng.uniform(0.45, 1.0)
    background = tuple(int(c * light) for c in tint)
    canvas = PILImage.new("RGB", (size, size), background)
    if rng.random() < 0.5:  # textured background: blurred noise blended over the tint
        noise = PILImage.effect_noise((size, size), rng.uniform(30, 90)).convert("RGB")
        canvas = PILImage.blend(canvas, noise.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2))), 0.35)
    draw = ImageDraw.Draw(canvas)
    radius = rng.uniform(0.18, 0.32) * size
    cx, cy = (rng.uniform(0.35, 0.65) * size for _ in range(2))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)], fill=fill)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


@transaction.atomic
def demo_round_seed(*, taste: Taste, pairs: int = 60, overlap: int = 2, seed: int = 0) -> Round:
    """A round in the annotating state holding `pairs` procedurally drawn train pairs."""
    rng = random.Random(seed)
    number = (taste.rounds.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    round_ = Round.objects.create(
        taste=taste, number=number, state=Round.State.ANNOTATING, pair_quota=pairs, label_quota=pairs * overlap,
        overlap=overlap, sampling_config={"source": "demo drawing"},
    )
    for index in range(pairs):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        prompt = Prompt.objects.create(text=f"a {colour} {shape}", tags=["demo", shape, colour])
        seed_a, seed_b = rng.randrange(2**31), rng.randrange(2**31)
        images = [
            image_store(
                prompt=prompt, seed=s, params={"drawing": "demo"}, data=draw_shape(shape=shape, colour=colour, seed=s)
            )
            for s in (seed_a, seed_b)
        ]
        Pair.objects.create(
            round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=overlap
        )
    return round_


TOY_MODEL = Path(settings.BASE_DIR) / "models" / "toy-flux"


def toy_base_model(folder: Path) -> BaseModel:
    """The base model row of a toy model folder (FLUX or SD), sampled with its own defaults (its chisel.json; the toy
    defaults of its family where the folder has none)."""
    from annotate.launch_settings import base_model_fields
    from sampler.model_index import model_kind
    from sampler.toy import defaults

    kind = model_kind(folder)
    toy = {f"default_{key}": value for key, value in defaults.SAMPLING[kind].items()}
    base, _ = BaseModel.objects.get_or_create(
        name=folder.name, defaults={"kind": kind, "path": str(folder.resolve()), **toy, **base_model_fields(folder)},
    )
    return base


def demo_sampling_round(*, taste: Taste, pairs: int = QUOTAS["pair_quota"], overlap: int = QUOTAS["overlap"],
                        eval_pairs: int = QUOTAS["eval_pair_quota"], train_steps: int | None = None) -> Round:
    """A round in the sampling state on the toy model, with held-out prompts for its evaluation: the demo's
    worker samples its pairs, and the round trains and evaluates itself once its labels are in. Its quotas are the
    launch form's starting ones (annotate/launch_settings.py), so round 2 launched with the form's values matches it."""
    from annotate.launch_settings import training_config
    from sampler.toy import defaults

    base = toy_base_model(TOY_MODEL)
    checkpoint = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=checkpoint)
    train, heldout = defaults.split_captions()
    train_ids = [Prompt.objects.create(text=text, tags=["toy"]).pk for text in train]
    heldout_ids = [Prompt.objects.create(text=text, tags=["toy"], split=Prompt.Split.HELDOUT).pk for text in heldout]
    return Round.objects.create(
        taste=taste, number=1, parent_checkpoint=checkpoint, state=Round.State.SAMPLING, pair_quota=pairs,
        label_quota=pairs * overlap, overlap=overlap, eval_pair_quota=eval_pairs,
        promotion_threshold=QUOTAS["promotion_threshold"], guard_rails={"adherence": {"max_drop": 0.05}},
        sampling_config={"prompt_ids": train_ids, "eval_prompt_ids": heldout_ids, "low_water": 20, "batch": 8},
        training_config=training_config(base=base, chosen={} if train_steps is None else {"steps": train_steps})
        or defaults.TRAINING[base.kind],
    )


def demo_file(name: str) -> Path:
    """A file the demo keeps beside its media folder (under `var/`): its logins, the URL it serves."""
    return Path(settings.MEDIA_ROOT).parent / name


def demo_url_record(*, url: str) -> None:
    """Record the URL the demo serves, for `simulate_annotators` to find without `--url`."""
    path = demo_file("demo-url")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url.strip() + "\n")


def demo_url() -> str | None:
    """The URL the demo recorded, if it did."""
    path = demo_file("demo-url")
    return (path.read_text().strip() or None) if path.is_file() else None


def demo_world_seed(*, pairs: int = QUOTAS["pair_quota"], eval_pairs: int = QUOTAS["eval_pair_quota"],
                    train_steps: int | None = None) -> dict[str, str]:
    """The demo taste, a lead and two annotators, and one round of `pairs` pairs, judged by `eval_pairs` eval pairs
    and trained for `train_steps` (else the toy model's own number); returns username → password.

    Safe to run again: existing users and the round are kept, and the saved logins are returned.
    """
    logins_file = demo_file("demo-logins.json")
    if Taste.objects.filter(slug=DEMO_TASTE).exists() and logins_file.exists():
        return json.loads(logins_file.read_text())
    logins = {}
    with transaction.atomic():
        taste = Taste.objects.filter(slug=DEMO_TASTE).first() or services.taste_create(
            slug=DEMO_TASTE, name="Demo taste", description="Procedurally drawn shapes; judge by texture and light.",
            guidelines=DEMO_GUIDELINES,
        )
        User = get_user_model()
        for username in (DEMO_LEAD, *DEMO_ANNOTATORS):
            password = secrets.token_urlsafe(9)
            user = User.objects.filter(username=username).first()
            if user is None and username == DEMO_LEAD:
                user, _ = services.lead_create(username=username, password=password)
            elif user is None:
                user, _ = services.annotator_create(username=username, tastes=[taste], password=password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            logins[username] = password
        if not taste.rounds.exists():
            if (TOY_MODEL / "model_index.json").exists():
                demo_sampling_round(taste=taste, pairs=pairs, eval_pairs=eval_pairs, train_steps=train_steps)
            else:
                demo_round_seed(taste=taste, pairs=pairs)
    logins_file.parent.mkdir(parents=True, exist_ok=True)
    logins_file.write_text(json.dumps(logins, indent=2))
    return logins
