"""Blind evaluation: an annotator who tries everything the API and the image bytes give cannot tell the child's
side, nor an eval pair from a train pair."""

import hashlib
import io
import struct
import uuid
import zlib
from types import SimpleNamespace

import pytest
import torch
from PIL import Image as PILImage
from scipy.stats import binomtest

from annotate import loop
from annotate.images import image_store, png_strip
from annotate.models import Assignment, BaseModel, Checkpoint, Image, Pair, Prompt, Round
from annotate.sampling import round_eval_inputs, round_store_eval_pairs
from sampler.generate import encode_png
from annotate.tasks import sample_base_batch
from sampler.pairs import sample_eval_pairs
from tests.conftest import client_for, make_annotator, png_bytes

pytestmark = pytest.mark.django_db

EVAL_PAIRS = 200
SIZE = 24


class NoisePipeline:
    """A stand-in model: every image is uniform noise from the image's own generator. Parent and child draw
    from the same distribution (the root, parent and child take the generator's first, second and third draw), so
    only provenance tells them apart."""

    def __init__(self, spec):
        self.draw = len(spec.lora_paths) % 3

    def __call__(self, *, prompt, generator, output_type, **kwargs):
        images = []
        for text, g in zip(prompt, generator, strict=True):
            g = torch.Generator().manual_seed(g.initial_seed() * 1_000_003 + zlib.crc32(text.encode()))
            draws = []
            for _ in range(3):  # a random number of grey levels: file sizes vary as much as the pixels do
                levels = int(torch.randint(2, 64, (1,), generator=g))
                noise = torch.randint(0, levels, (SIZE, SIZE, 3), generator=g) * (255 // (levels - 1))
                draws.append(noise.to(torch.uint8))
            images.append(PILImage.fromarray(draws[self.draw].numpy()))
        return SimpleNamespace(images=images)


class NoiseCache:
    def get(self, spec):
        return NoisePipeline(spec)


def evaluating_round(taste, tmp_path) -> Round:
    """A round whose child extends its parent's LoRA chain, in evaluation, with EVAL_PAIRS eval pairs and as many
    child-vs-base pairs (the parent is not the root) sampled and stored through the real path (sampler record in
    the PNG, image_store, round_store_eval_pairs, sample_base_batch)."""
    base = BaseModel.objects.create(name="noise", kind="flux", path=str(tmp_path / "base-model"), default_width=SIZE,
                                    default_height=SIZE)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.RETIRED)
    parent = Checkpoint.objects.create(taste=taste, base_model=base, parent=root, lora_path=str(tmp_path / "lora-1"),
                                       status=Checkpoint.Status.CURRENT)
    child = Checkpoint.objects.create(taste=taste, base_model=base, parent=parent, lora_path=str(tmp_path / "lora-2"))
    prompts = [Prompt.objects.create(text=f"held-out prompt {i}", split=Prompt.Split.HELDOUT) for i in range(20)]
    round_ = Round.objects.create(
        taste=taste, number=1, state=Round.State.EVALUATING, parent_checkpoint=parent, child_checkpoint=child,
        overlap=1, pair_quota=EVAL_PAIRS, label_quota=EVAL_PAIRS, eval_pair_quota=EVAL_PAIRS,
        sampling_config={"prompt_ids": [], "eval_prompt_ids": [p.pk for p in prompts], "width": SIZE, "height": SIZE},
    )
    requests = loop.round_eval_requests(round_)
    parent_spec, child_spec, params, pair_requests = round_eval_inputs(round_id=round_.pk, requests=requests)
    assert child_spec.lora_paths == (*parent_spec.lora_paths, str(tmp_path / "lora-2"))
    sampled = sample_eval_pairs(NoiseCache(), parent_spec, child_spec, pair_requests, params)
    assert "lora-2" in PILImage.open(io.BytesIO(sampled[0].image_b.png)).text["chisel"]  # the sampler's record
    assert round_store_eval_pairs(round_id=round_.pk, requests=requests, sampled=sampled) == EVAL_PAIRS
    assert sample_base_batch(round_.pk, loop.round_base_requests(round_), NoiseCache()) == EVAL_PAIRS
    return round_


def chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, length) of every chunk of a PNG file."""
    out, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        out.append((data[offset + 4:offset + 8], length))
        offset += 12 + length
    return out


def look(api, url: str) -> dict:
    """Everything a cheater learns from one image: bytes, chunks, the record if any, every response header."""
    response = api.get(url)
    assert response.status_code == 200
    data = b"".join(response.streaming_content) if response.streaming else response.content
    record = PILImage.open(io.BytesIO(data)).text.get("chisel", "")
    return {"url": url, "size": len(data), "chunks": chunks(data), "record": record,
            "ancillary": sum(n for kind, n in chunks(data) if kind not in (b"IDAT", b"IHDR", b"IEND")),
            "headers": {k.lower(): v for k, v in response.items()}}


def clue(name: str, key):
    """A guess from one clue: the image with the greater `key` is taken for the child. Ties fall back on the
    greater URL (a content hash), not on the side, so that every guess is a fixed function of the stored
    pixels and the test is not at the mercy of the side coin."""
    def guess(left: dict, right: dict) -> dict:
        kl, kr = key(left), key(right)
        if kl == kr:
            return max(left, right, key=lambda seen: seen["url"])
        return right if kr > kl else left
    return name, guess


class SeenBefore:
    """A guess from memory: an image met in an earlier pair of the round is taken for the child (it would be, were
    the child's image shown against both its parent and the base)."""

    def __init__(self):
        self.urls: set[str] = set()

    def __call__(self, left: dict, right: dict) -> dict:
        known = [side for side in (left, right) if side["url"] in self.urls]
        self.urls |= {left["url"], right["url"]}
        return known[0] if len(known) == 1 else max(left, right, key=lambda seen: seen["url"])


GUESSES = dict([
    ("seen in an earlier pair", SeenBefore()),
    clue("sampling record (LoRAs named)", lambda seen: seen["record"].count("lora")),
    clue("larger file", lambda seen: seen["size"]),
    clue("more metadata bytes", lambda seen: seen["ancillary"]),
    clue("more chunks", lambda seen: len(seen["chunks"])),
    clue("later Last-Modified", lambda seen: seen["headers"].get("last-modified", "")),
    clue("greater ETag", lambda seen: seen["headers"].get("etag", "")),
    clue("greater URL", lambda seen: seen["url"]),
    clue("longer header block", lambda seen: len(str(sorted(seen["headers"].items())))),
])


def test_a_cheating_annotator_cannot_tell_the_childs_side_on_200_eval_pairs(taste, tmp_path, settings):
    """200 child-vs-parent and 200 child-vs-base pairs, mixed; every clue guesses at chance on both kinds."""
    settings.CHISEL_THROTTLE_RATES = {**settings.CHISEL_THROTTLE_RATES, "claims": "2000/min", "submissions": "2000/min"}
    round_ = evaluating_round(taste, tmp_path)
    annotator = make_annotator(taste)
    api = client_for(annotator)
    child_url = {pair.pk: pair.image_b.file.url for pair in Pair.objects.filter(round=round_).select_related("image_b")}
    kinds = dict(Pair.objects.filter(round=round_).values_list("pk", "kind"))
    hits = {(name, kind): 0 for name in GUESSES for kind in ("eval", "base")}
    seen = dict.fromkeys(("eval", "base"), 0)
    GUESSES["seen in an earlier pair"].urls.clear()
    while True:
        response = api.get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": 10})
        if response.status_code == 204:
            break
        for item in response.json():
            # The JSON names no pair, kind or round; both sides have the same shape and size.
            assert list(item) == ["id", "prompt", "left", "right", "lease_expires_at"]
            assert list(item["left"]) == list(item["right"]) == ["url", "width", "height"]
            assert (item["left"]["width"], item["left"]["height"]) == (item["right"]["width"], item["right"]["height"])
            left, right = look(api, item["left"]["url"]), look(api, item["right"]["url"])
            pair_id = Assignment.objects.values_list("pair_id", flat=True).get(pk=item["id"])
            truth = child_url[pair_id]
            for name, guess in GUESSES.items():
                hits[name, kinds[pair_id]] += guess(left, right)["url"] == truth
            judged = api.post("/api/v1/judgements/", {"assignment": item["id"], "choice": "left",
                                                      "client_uuid": str(uuid.uuid4())}, format="json")
            assert judged.status_code == 201
            # The answer speaks of the screen: nothing in it says which image is A (the parent).
            assert set(judged.json()) == {"id", "assignment", "choice", "flags_left", "flags_right", "duration_ms",
                                          "client_uuid", "created_at", "amended_at"}
            assert judged.json()["choice"] == "left"
            seen[kinds[pair_id]] += 1
    assert seen == {"eval": EVAL_PAIRS, "base": EVAL_PAIRS}
    p_values = {key: binomtest(count, seen[key[1]], 0.5).pvalue for key, count in hits.items()}
    # A family-wise 1% over every clue and kind (Bonferroni): a leak moves a clue far from chance (the record clue
    # scored 200 of 200 before stripping, the memory clue 167 of 200 with the child in two pairs: p < 1e-20).
    alpha = 0.01 / len(p_values)
    assert all(p > alpha for p in p_values.values()), "; ".join(f"{n}: {hits[n]} ({p:.4f})" for n, p in p_values.items())


def test_stored_and_served_pngs_carry_only_their_pixels_and_the_record_stays_in_the_database(taste, annotator):
    prompt = Prompt.objects.create(text="a lighthouse")
    pixels = PILImage.new("RGB", (8, 8), (10, 200, 30))
    record = {"prompt": prompt.text, "seed": 7, "model": {"base": "/srv/models/flux", "loras": ["/srv/ckpt/r1"]}}
    image = image_store(prompt=prompt, data=encode_png(pixels, record), seed=7, params=record)
    stored = image.file.read()
    assert [kind for kind, _ in chunks(stored)] == [b"IHDR", b"IDAT", b"IEND"]
    assert b"/srv" not in stored and b"chisel" not in stored
    assert PILImage.open(io.BytesIO(stored)).tobytes() == pixels.tobytes()  # lossless
    assert Image.objects.get(pk=image.pk).params == record
    assert image.sha256 == hashlib.sha256(stored).hexdigest() and image.sha256 in image.file.name


def test_a_file_stored_before_stripping_is_served_stripped(taste, annotator, media_root):
    prompt = Prompt.objects.create(text="an old file")
    image = image_store(prompt=prompt, data=png_bytes(), seed=1)
    old = encode_png(PILImage.new("RGB", (8, 8)), {"model": {"loras": ["/srv/ckpt/secret"]}})
    (media_root / image.file.name).write_bytes(old)  # as image_store wrote it before this change
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1, pair_quota=1)
    partner = image_store(prompt=prompt, data=png_bytes((9, 9, 9)), seed=2)
    Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=image, image_b=partner, overlap=1)  # by taste
    served = look(client_for(annotator), image.file.url)
    assert [kind for kind, _ in served["chunks"]] == [b"IHDR", b"IDAT", b"IEND"] and not served["record"]
    assert "last-modified" not in served["headers"]
    assert png_strip(b"not a png") == b"not a png"


def test_eval_pairs_come_mixed_with_held_back_train_pairs_and_look_alike(taste):
    """Held-back train pairs wait while the round annotates; when it evaluates they are handed out among its
    eval pairs, neither kind first, in the same shape."""
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1, pair_quota=20,
                                  label_quota=20, eval_pair_quota=20)
    prompt = Prompt.objects.create(text="a prompt")
    source = image_store(prompt=prompt, data=png_bytes((1, 2, 3)), seed=1)
    other = image_store(prompt=prompt, data=png_bytes((3, 2, 1)), seed=2)

    def add(kind, held_back, seed):
        return Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=source, image_b=other, kind=kind,
                                   held_back=held_back, seed=seed, overlap=1)

    held = {add(Pair.Kind.TRAIN, True, seed).pk for seed in range(20)}
    annotator = make_annotator(taste)
    api = client_for(annotator)
    assert api.get("/api/v1/assignments/next/", {"taste": taste.slug}).status_code == 204  # held back
    Round.objects.filter(pk=round_.pk).update(state=Round.State.EVALUATING)
    evals = {add(Pair.Kind.EVAL, False, loop.EVAL_SEED_BASE + seed).pk for seed in range(20)}
    order = []
    while (response := api.get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": 5})).status_code == 200:
        for item in response.json():
            assert list(item) == ["id", "prompt", "left", "right", "lease_expires_at"]
            order.append(Assignment.objects.values_list("pair_id", flat=True).get(pk=item["id"]))
            api.post(f"/api/v1/assignments/{item['id']}/skip/")
    assert set(order) == held | evals
    first_half = order[:20]
    assert 5 <= sum(pair_id in evals for pair_id in first_half) <= 15, order  # mixed, not eval last
