"""The lead's page of a taste: renders with no rounds, a failed round and done rounds; its numbers are the database's."""

import io
import json
import re
import uuid
import xml.etree.ElementTree as ET

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


SVG = "{http://www.w3.org/2000/svg}"


def round_ticks(html: str) -> list[list[str]]:
    """The tick labels of every x axis labelled `round` in the page's charts."""
    axes = []
    for svg in re.findall(r"<figure class=\"chart\">(<svg.*?</svg>)", html, re.S):
        for axis in ET.fromstring(svg).iter(f"{SVG}g"):
            if not axis.get("id", "").startswith("matplotlib.axis"):
                continue
            texts = [t.text for t in axis.iter(f"{SVG}text")]
            if texts and texts[-1] == "round":  # the axis label comes after the tick labels
                axes.append([t.text for tick in axis if tick.get("id", "").startswith("xtick")
                             for t in tick.iter(f"{SVG}text")])
    return axes


def test_round_axes_show_whole_rounds_only(lead_browser, taste, tmp_path):
    build_rounds(taste, tmp_path, [["b", "b"], ["a", "b"], ["b"]])
    axes = round_ticks(page(lead_browser, taste))
    assert len(axes) == 3  # the win rate, the win rate beside diversity, the labels
    for ticks in axes:
        assert ticks and all(re.fullmatch(r"[1-3]", tick) for tick in ticks), ticks


def right_edge(group) -> float:
    """The right edge of an axes: the largest x of its background patch (the first path drawn in it)."""
    path = next(group.iter(f"{SVG}path")).get("d")
    return max(float(x) for x in re.findall(r"[ML] ([-\d.]+) [-\d.]+", path))


def test_legends_sit_right_of_the_data(lead_browser, taste, tmp_path):
    build_rounds(taste, tmp_path, [["b", "b"], ["a", "b"], ["b"]])
    html = page(lead_browser, taste)
    charts = re.findall(r'<section id="([^"]+)">.*?<figure class="chart">(<svg.*?</svg>)', html, re.S)
    with_legend = 0
    for name, svg in charts:
        root = ET.fromstring(svg)
        groups = list(root.iter(f"{SVG}g"))
        legends = [g for g in groups if g.get("id", "").startswith("legend")]
        if not legends:
            continue
        with_legend += 1
        data_right = max(right_edge(g) for g in groups if re.fullmatch(r"axes_\d+", g.get("id", "")))
        for legend in legends:
            texts = [float(t.get("x")) for t in legend.iter(f"{SVG}text")]
            assert texts and min(texts) > data_right, (name, texts, data_right)
    assert with_legend == 3  # the win rate, the training curves, the labels


def filmstrip_cells(html: str) -> dict[tuple[str, str], list[str]]:
    """(prompt, seed) → each column's cell: `img` or the reason written in the empty cell."""
    table = re.search(r'<table class="filmstrip">(.*?)</table>', html, re.S).group(1)
    columns = re.findall(r"<th>([^<]*)</th>", table)[1:]
    rows = {}
    for prompt, seed, cells in re.findall(r"<tr><td>([^<]*)<br>seed (\d+)</td>(.*?)</tr>", table, re.S):
        found = re.findall(r'<td>(?:<img src="[^"]+"|<span class="empty">([^<]*)</span>)', cells)
        rows[(prompt, seed)] = dict(zip(columns, [reason or "img" for reason in found]))
    return rows


def test_empty_filmstrip_cells_say_why(lead_browser, taste, tmp_path):
    base = BaseModel.objects.create(name="toy", kind="flux", path=str(tmp_path))
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.RETIRED)
    kept = Checkpoint.objects.create(taste=taste, base_model=base, parent=root, status=Checkpoint.Status.CURRENT)
    dropped = Checkpoint.objects.create(taste=taste, base_model=base, parent=kept, status=Checkpoint.Status.REJECTED)
    training = Checkpoint.objects.create(taste=taste, base_model=base, parent=kept, status=Checkpoint.Status.CANDIDATE)
    for number, child in enumerate((kept, dropped, training), start=1):
        Round.objects.create(taste=taste, number=number, parent_checkpoint=child.parent, child_checkpoint=child,
                             state=Round.State.TRAINING if child == training else Round.State.DONE)
    circle, square = (Prompt.objects.create(text=text, split=Prompt.Split.HELDOUT) for text in ("circle", "square"))
    for checkpoint, prompt, seed in ((root, circle, 7), (root, circle, 8), (root, square, 7), (kept, circle, 7)):
        image_store(prompt=prompt, data=png(10 * seed + checkpoint.pk), checkpoint=checkpoint, seed=seed)

    rows = filmstrip_cells(page(lead_browser, taste))
    assert rows[("circle", "7")] == {"base": "img", "round 1": "img", "round 2": "rejected checkpoint, never sampled",
                                     "round 3": "not sampled yet"}
    assert rows[("circle", "8")]["round 1"] == "no image for this seed"
    assert rows[("square", "7")]["round 1"] == "prompt not in its evaluation"


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
