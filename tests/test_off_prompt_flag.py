"""The "doesn't match the prompt" flag: offered by the API's schema, stored per image A/B, carried through exports
(Pick-a-Pic parquet and JSONL) and back in through imports."""

import uuid

import pytest
import yaml

from annotate import services
from annotate.exports import ExportOptions, export_preferences
from annotate.imports import import_preferences
from annotate.images import image_store
from annotate.models import Judgement, Pair, Prompt, Round
from tests.conftest import client_for, make_annotator, png_bytes

pytestmark = pytest.mark.django_db


def test_the_schema_offers_it_and_a_submission_stores_it_on_the_image_it_was_put_on(taste, annotator):
    schema = yaml.safe_load(client_for(annotator).get("/api/schema/").content)
    assert "off_prompt" in schema["components"]["schemas"]["DefectFlag"]["enum"]
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1)
    prompt = Prompt.objects.create(text="a red circle")
    images = [image_store(prompt=prompt, data=png_bytes((side * 90, 20, 30)), seed=side) for side in (0, 1)]
    Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=1)
    (item,) = client_for(annotator).get(f"/api/v1/assignments/next/?taste={taste.slug}").json()
    response = client_for(annotator).post("/api/v1/judgements/", {
        "assignment": item["id"], "choice": "left", "client_uuid": str(uuid.uuid4()),
        "flags_right": ["off_prompt"], "duration_ms": 900}, format="json")
    assert response.status_code == 201 and response.json()["flags_right"] == ["off_prompt"]
    judgement = Judgement.objects.select_related("assignment").get()
    expected = ([], ["off_prompt"]) if judgement.assignment.left_is_a else (["off_prompt"], [])
    assert (judgement.flags_a, judgement.flags_b) == expected


@pytest.mark.parametrize(("format", "extension"), [("pickapic", "parquet"), ("jsonl", "jsonl")])
def test_it_round_trips_export_then_import(taste, tmp_path, format, extension):
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1)
    for index in range(3):
        prompt = Prompt.objects.create(text=f"a blue square number {index}")
        images = [image_store(prompt=prompt, data=png_bytes((40 * index, side * 90, 30), (16, 12)), seed=side)
                  for side in (0, 1)]
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=1)
    annotator = make_annotator(taste)
    for index, assignment in enumerate(services.assignment_claim(annotator=annotator, taste=taste, count=3)):
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice="left",
                                  client_uuid=uuid.uuid4(), flags_left=["off_prompt"] if index else [],
                                  flags_right=["artifacts", "off_prompt"] if index == 2 else [])
    original = sorted((j.pair.prompt.text, j.flags_a, j.flags_b)
                      for j in Judgement.objects.select_related("pair__prompt"))
    assert sum("off_prompt" in a + b for _, a, b in original) == 2

    out = tmp_path / f"d.{extension}"
    export_preferences(ExportOptions(out=out, format=format))
    assert "`off_prompt` doesn't match the prompt" in next(tmp_path.glob("*README.md")).read_text()  # the card
    other = services.taste_create(slug="copied")
    assert import_preferences(path=out, taste=other, source="roundtrip").rows == 3
    copied = sorted((j.pair.prompt.text, j.flags_a, j.flags_b)
                    for j in Judgement.objects.filter(pair__taste=other).select_related("pair__prompt"))
    assert copied == original
