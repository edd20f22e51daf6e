"""The lead's page of a taste: renders with no rounds, a failed round and done rounds; its numbers are the database's."""

import io
import json
import re
import uuid

import numpy as np
import pytest
from django.test import Client
from PIL import Image as PILImage

from annotate import services
from annotate.evaluation import clustered_rate
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Image, Judgement, Pair, Prompt, Round
from sampler.diversity import diversity, mean_pairwise_distance
from tests.conftest import make_annotator

pytestmark = pytest.mark.django_db


def png(level: int, stripe: int = 0) -> bytes:
    pixels = np.full((16, 16, 3), level, dtype=np.uint8)
    if stripe:
        pixels[::stripe] = 255 - level
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def page(browser, taste) -> str:
    response = browser.get(f"/admin/annotate/taste/{taste.pk}/charts/")
    assert response.status_code == 200
    return response.content.decode()


def cell(html: str, row_attr: str, css: str) -> str:
    row = re.search(rf'<tr {row_attr}>(.*?)</tr>', html, re.S).group(1)
    return re.search(rf'class="{css}">([^<]*)<', row).group(1).strip()


def test_a_taste_with_no_rounds_renders(lead_browser, taste):
    html = page(lead_browser, taste)
    assert 'id="no-rounds"' in html and html.count('<figure class="chart"><svg') == 5
    assert "No training run yet" in html and "No held-out images yet" in html


def test_a_failed_round_shows_its_state_and_reason(lead_browser, taste):
    Round.objects.create(taste=taste, number=1, state=Round.State.FAILED, failed_in="training",
                         error="Training failed: CUDA out of memory")
    html = page(lead_browser, taste)
    assert "failed — Training failed: CUDA out of memory" in html
    assert cell(html, 'data-round="1"', "win-rate") == "—" and cell(html, 'data-round="1"', "decision") == "—"


def build_rounds(taste, tmp_path, choices_by_round: list[list[str]]):
    """Done rounds along a lineage, each with eval pairs (parent A, child B) judged with `choices`, images with
    diagnostics, and a metrics.jsonl beside the child's LoRA."""
    base = BaseModel.objects.create(name="toy", kind="flux", path=str(tmp_path))
    parent = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.RETIRED)
    heldout = [Prompt.objects.create(text=f"held-out {i}", split=Prompt.Split.HELDOUT) for i in range(2)]
    annotator = make_annotator(taste)
    for number, choices in enumerate(choices_by_round, start=1):
        run = tmp_path / f"run-{number}"
        (run / "checkpoint").mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": step, "loss": 0.7 - 0.01 * step * number, "implicit_accuracy": 0.5 + 0.02 * step,
                        "margin": 0.1 * step}) + "\n" for step in range(1, 6)))
        child = Checkpoint.objects.create(taste=taste, base_model=base, parent=parent, lora_path=str(run / "checkpoint"),
                                          status=Checkpoint.Status.RETIRED)
        round_ = Round.objects.create(taste=taste, number=number, parent_checkpoint=parent, child_checkpoint=child,
                                      state=Round.State.EVALUATING, overlap=1)
        for index, _ in enumerate(choices):
            prompt, seed = heldout[index % 2], index // 2
            a = image_store(prompt=prompt, data=png(40 + index, 0), checkpoint=parent, seed=seed,
                            diagnostics={"brightness": 0.1 * number, "flat_share": 0.9})
            b = image_store(prompt=prompt, data=png(200 - 10 * number - index, 2 + index % 3), checkpoint=child,
                            seed=seed, diagnostics={"brightness": 0.1 * number + 0.05, "flat_share": 0.5})
            Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, kind="eval", seed=seed,
                                overlap=1)
        for assignment, choice in zip(services.assignment_claim(annotator=annotator, taste=taste, count=len(choices)),
                                      choices):
            screen = {"a": "left" if assignment.left_is_a else "right", "b": "right" if assignment.left_is_a else "left",
                      "tie": "tie"}[choice]
            services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                      client_uuid=uuid.uuid4(), duration_ms=1000 + 100 * number)
        promote = choices.count("b") > choices.count("a")
        Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE, decision={"promote": promote})
        parent = child if promote else parent
    Checkpoint.objects.filter(pk=parent.pk).update(status=Checkpoint.Status.CURRENT)


def test_done_rounds_show_the_databases_figures(lead_browser, taste, tmp_path, django_assert_max_num_queries):
    build_rounds(taste, tmp_path, [["b", "b", "b", "a", "tie", "b"], ["a", "b", "tie", "tie"], ["b"] * 5])
    html = page(lead_browser, taste)
    assert 'id="no-rounds"' not in html and html.count('<figure class="chart"><svg') == 6  # with the strengths
    for round_ in Round.objects.filter(taste=taste):
        judgements = Judgement.objects.filter(pair__round=round_)
        expected = clustered_rate(judgements.order_by("id").values_list("pair__prompt_id", "pair_id", "choice"))
        row = f'data-round="{round_.number}"'
        assert cell(html, row, "win-rate") == f"{expected.rate:.3f}"
        assert f"[{expected.low:.3f}, {expected.high:.3f}] (n={expected.n})" in html
        assert cell(html, row, "eval-labels") == str(judgements.count())
        assert cell(html, row, "decision") == ("promoted" if round_.decision["promote"] else "rejected")
        last = json.loads((tmp_path / f"run-{round_.number}" / "metrics.jsonl").read_text().splitlines()[-1])
        assert f'class="loss">{last["loss"]:.4f}<' in html
    for checkpoint in Checkpoint.objects.filter(taste=taste):
        images = list(Image.objects.filter(checkpoint=checkpoint))
        if not images:
            continue
        row = f'data-checkpoint="{checkpoint.pk}"'
        assert cell(html, row, "images") == str(len(images))
        assert cell(html, row, "brightness") == f"{np.mean([i.diagnostics['brightness'] for i in images]):.4f}"
        by_prompt = {}
        for image in sorted(images, key=lambda i: (i.prompt_id, i.seed)):
            with image.file.open("rb") as handle:
                by_prompt.setdefault(image.prompt_id, []).append(PILImage.open(handle).convert("RGB"))
        assert cell(html, row, "diversity") == f"{diversity(list(by_prompt.values())):.4f}"
    assert html.count('<img src="') >= 4  # the filmstrip: held-out keys across the lineage
    assert cell(html, 'data-round="1"', "train-labels") == "0"

    with django_assert_max_num_queries(30):  # diversity is cached now: a bounded number of queries
        page(lead_browser, taste)


def test_annotators_cannot_see_the_page(annotator, taste):
    browser = Client()
    browser.force_login(annotator)
    assert browser.get(f"/admin/annotate/taste/{taste.pk}/charts/").status_code == 302


def test_diversity_is_zero_for_identical_images_and_grows_with_difference():
    grey = PILImage.new("RGB", (32, 32), (128, 128, 128))
    striped = PILImage.fromarray(np.tile(np.array([[0], [255]], dtype=np.uint8), (16, 32))[..., None].repeat(3, -1))
    red = PILImage.new("RGB", (32, 32), (220, 30, 30))
    assert mean_pairwise_distance([grey]) is None and diversity([[grey]]) is None
    assert mean_pairwise_distance([grey, grey.copy()]) == 0
    assert 0 < mean_pairwise_distance([grey, striped]) <= 1
    assert mean_pairwise_distance([grey, red]) > mean_pairwise_distance([grey, grey.copy()])
    assert diversity([[grey, grey.copy()], [grey, red]]) == pytest.approx(mean_pairwise_distance([grey, red]) / 2)
