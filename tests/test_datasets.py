"""Preference datasets: Pick-a-Pic export, all-or-nothing import, and the export job (annotate/exports.py, imports.py)."""

import io
import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from annotate import services
from annotate.exports import ExportOptions, export_preferences
from annotate.imports import ImportRejected, import_preferences
from annotate.models import Image, Judgement, Pair, Prompt, Round
from tests.conftest import client_for, make_annotator, png_bytes, wait_until
from annotate.images import image_store

pytestmark = pytest.mark.django_db
COMPARED = ["caption", "jpg_0", "jpg_1", "label_0", "label_1", "choice", "flags_0", "flags_1", "seed_0", "seed_1",
            "params_0", "params_1", "guidance", "duration_ms", "shown_left", "model_0", "model_1", "image_0_uid",
            "image_1_uid", "are_different", "best_image_uid", "created_at", "has_label", "user_id", "ranking_id"]


def judged_world(taste, choices=("left", "right", "tie", "both_bad", "left", "right")) -> Round:
    """A round of distinct drawn pairs, each judged once with the given screen choices (and some flags)."""
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1)
    for index in range(len(choices)):
        prompt = Prompt.objects.create(text=f"a red circle number {index}")
        images = [
            image_store(prompt=prompt, data=png_bytes((40 * index % 255, side * 90, 30), (16, 12)), seed=2 * index + side,
                        params={"guidance": 3.5, "steps": 4, "seed": 2 * index + side})
            for side in (0, 1)
        ]
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=1,
                            seed=index)
    annotator = make_annotator(taste)
    for choice in choices:
        (assignment,) = services.assignment_claim(annotator=annotator, taste=taste)
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=choice,
                                  client_uuid=uuid.uuid4(), flags_left=["waxy_skin"], duration_ms=1500)
    return round_


def read(path: Path) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    return sorted(({k: row[k] for k in COMPARED} for row in rows), key=lambda r: (r["caption"], r["label_0"]))


def test_export_holds_pickapic_columns_and_right_labels(taste, tmp_path):
    judged_world(taste)
    summary = export_preferences(ExportOptions(out=tmp_path / "d.parquet"))
    assert (summary.rows, summary.ties_dropped, summary.both_bad_skipped) == (4, 1, 1)
    table = pq.read_table(tmp_path / "d.parquet")
    for column in ("caption", "jpg_0", "jpg_1", "label_0", "label_1", "are_different", "has_label", "best_image_uid",
                   "image_0_uid", "image_1_uid", "model_0", "model_1", "user_id", "ranking_id", "created_at",
                   "num_example_per_prompt", "taste", "round", "flags_0", "flags_1", "duration_ms", "shown_left"):
        assert column in table.column_names
    assert table.schema.field("jpg_0").type == pa.binary() and table.schema.field("label_0").type == pa.float64()
    by_id = {j.pk: j for j in Judgement.objects.select_related("assignment")}
    for row in table.to_pylist():
        judgement = by_id[row["ranking_id"]]
        assert row["label_0"] == {"a": 1.0, "b": 0.0}[judgement.choice] and row["label_0"] + row["label_1"] == 1
        assert row["shown_left"] == (0 if judgement.assignment.left_is_a else 1)
        assert (row["flags_0"], row["flags_1"]) == (judgement.flags_a, judgement.flags_b)
        assert row["best_image_uid"] == (row["image_0_uid"] if row["label_0"] == 1 else row["image_1_uid"])
        assert row["guidance"] == 3.5 and row["duration_ms"] == 1500
    card = (tmp_path / "d.parquet.README.md").read_text()
    assert "| rows | 4 |" in card and "ties dropped (1 rows)" in card and "Licence" in card


def test_ties_are_kept_as_half_on_request(taste, tmp_path):
    judged_world(taste)
    summary = export_preferences(ExportOptions(out=tmp_path / "d.parquet", ties="keep"))
    rows = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert summary.ties_kept == 1 and len(rows) == 5
    (tie,) = [row for row in rows if row["choice"] == "tie"]
    assert (tie["label_0"], tie["label_1"], tie["best_image_uid"]) == (0.5, 0.5, "")
    assert all(row["label_0"] in (0.0, 1.0) for row in rows if row is not tie)


def test_the_file_loads_with_datasets_and_every_image_decodes(taste, tmp_path):
    from datasets import load_dataset

    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "d.parquet"))
    dataset = load_dataset("parquet", data_files=str(tmp_path / "d.parquet"), split="train")
    assert len(dataset) == 4
    for row in dataset:
        for column in ("jpg_0", "jpg_1"):
            PILImage.open(io.BytesIO(row[column])).load()
        assert row["label_0"] in (0.0, 1.0)


def test_majority_aggregation_gives_one_row_per_pair(taste, tmp_path):
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=2)
    prompt = Prompt.objects.create(text="a blue square")
    for index in range(2):
        images = [image_store(prompt=prompt, data=png_bytes((index * 50, side * 100, 7))) for side in (0, 1)]
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=images[0], image_b=images[1], overlap=2)
    first, second = make_annotator(taste), make_annotator(taste)
    for annotator, verdicts in ((first, ["a", "a"]), (second, ["a", "b"])):
        for assignment in services.assignment_claim(annotator=annotator, taste=taste, count=2):
            wanted = verdicts[0 if assignment.pair_id == round_.pairs.order_by("id")[0].pk else 1]
            screen = "left" if (wanted == "a") == assignment.left_is_a else "right"
            services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                      client_uuid=uuid.uuid4())
    export_preferences(ExportOptions(out=tmp_path / "m.parquet", aggregate="majority", ties="keep"))
    rows = sorted(pq.read_table(tmp_path / "m.parquet").to_pylist(), key=lambda r: r["pair_id"])
    assert [(r["label_0"], r["judgements"], r["choice"]) for r in rows] == [(1.0, 2, "a"), (0.5, 2, "tie")]


def test_export_import_export_gives_the_same_rows(taste, tmp_path):
    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "first.parquet", ties="keep"))
    other = services.taste_create(slug="landscapes")
    summary = import_preferences(path=tmp_path / "first.parquet", taste=other, source="roundtrip")
    assert summary.rows == 5 and summary.ties == 1 and summary.annotator == "import:roundtrip"
    export_preferences(ExportOptions(out=tmp_path / "second" / "again.parquet", tastes=["landscapes"], ties="keep"))
    assert read(tmp_path / "first.parquet") == read(tmp_path / "second" / "again.parquet")


def test_jsonl_export_writes_images_beside_it(taste, tmp_path):
    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "j" / "d.jsonl", format="jsonl", image_format="jpeg"))
    rows = [json.loads(line) for line in (tmp_path / "j" / "d.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and "jpg_0" not in rows[0]
    for row in rows:
        with PILImage.open(tmp_path / "j" / row["image_0_file"]) as image:
            assert image.format == "JPEG"


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def good_row(**changes) -> dict:
    return {"caption": "a green triangle", "jpg_0": png_bytes((1, 2, 3)), "jpg_1": png_bytes((200, 2, 3)),
            "label_0": 1.0, "label_1": 0.0, **changes}


def nothing_written(media_root) -> bool:
    files = list(Path(media_root).rglob("*.*")) if Path(media_root).exists() else []
    return not (Pair.objects.exists() or Judgement.objects.exists() or Image.objects.exists() or files)


@pytest.mark.parametrize(
    ("rows", "schema", "message"),
    [
        ([{"caption": "x", "jpg_0": b"", "jpg_1": b""}], None, "missing column(s) label_0"),
        ([good_row(label_0="1")], None, "label_0: has type string; expected a number"),
        ([good_row(), good_row(jpg_1=b"\x89PNG\r\n\x1a\nnot really")], None, "row 1: jpg_1 is not a readable"),
        ([good_row(label_0=2.0, label_1=-1.0)], None, "row 0: label_0 is 2.0; expected 0, 0.5 or 1"),
        ([good_row(label_1=1.0)], None, "row 0: label_1 is 1.0 but label_0 is 1.0"),
        ([good_row(jpg_0=png_bytes(size=(300, 300)))], None, "row 0: jpg_0 is 300×300 pixels, over the limit"),
        ([good_row(jpg_0=b"GIF89a\x01\x00\x01\x00")], None, "row 0: jpg_0 is not a readable PNG/JPEG/WEBP image"),
        ([], pa.schema([("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
                        ("label_0", pa.float64())]), "holds no rows"),
    ],
    ids=["missing-column", "wrong-type", "corrupt-image", "label-out-of-range", "labels-disagree", "oversized-image",
         "gif", "empty"],
)
def test_each_bad_file_gets_its_own_error_and_imports_nothing(taste, tmp_path, media_root, rows, schema, message):
    path = write_parquet(tmp_path / "bad.parquet", rows, schema)
    with pytest.raises(ImportRejected) as error:
        import_preferences(path=path, taste=taste, source="bad", max_pixels=256 * 256)
    assert message in str(error.value)
    assert nothing_written(media_root)


def test_a_bad_row_late_in_a_file_rolls_back_everything_and_lists_all_bad_rows(taste, tmp_path, media_root):
    rows = [good_row(caption=f"row {i}", jpg_0=png_bytes((i, 9, 9))) for i in range(30)]
    rows[25]["label_0"], rows[27]["jpg_1"] = 0.7, b"junk"
    with pytest.raises(ImportRejected, match="2 of 30 rows are invalid") as error:
        import_preferences(path=write_parquet(tmp_path / "late.parquet", rows), taste=taste, source="late")
    assert "row 25: label_0" in str(error.value) and "row 27: jpg_1" in str(error.value)
    assert nothing_written(media_root)


def test_importing_the_same_file_twice_is_refused_and_changes_nothing(taste, tmp_path):
    path = write_parquet(tmp_path / "ok.parquet", [good_row(), good_row(caption="another", label_0=0.5, label_1=0.5)])
    call_command("import_preferences", str(path), "--taste", taste.slug, "--source", "pickapic", stdout=io.StringIO(),
                 stderr=io.StringIO())
    counts = (Pair.objects.count(), Judgement.objects.count(), Round.objects.count())
    assert counts == (2, 2, 1)
    assert set(Judgement.objects.values_list("choice", flat=True)) == {"a", "tie"}
    with pytest.raises(CommandError, match="was imported before from source 'pickapic'"):
        call_command("import_preferences", str(path), "--taste", taste.slug, "--source", "pickapic",
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert (Pair.objects.count(), Judgement.objects.count(), Round.objects.count()) == counts


def test_export_command_writes_file_and_card(taste, tmp_path):
    judged_world(taste)
    out = io.StringIO()
    call_command("export_preferences", "--out", str(tmp_path / "c.parquet"), "--taste", taste.slug, "--ties", "keep",
                 stdout=out, stderr=io.StringIO())
    assert "Wrote 5 rows from 6 judgements" in out.getvalue()
    assert pq.read_metadata(tmp_path / "c.parquet").num_rows == 5


def test_annotators_cannot_export(taste, annotator):
    assert client_for(annotator).post("/api/v1/exports/", {}, format="json").status_code == 403
    assert client_for(annotator).get("/api/v1/exports/1/").status_code == 403


@pytest.mark.integration
def test_a_lead_exports_through_the_api_and_downloads_the_file(celery_worker_process, tmp_path):
    from annotate import services as svc
    from tests.conftest import make_lead

    taste = svc.taste_create(slug="exported")
    judged_world(taste)
    lead = make_lead()
    response = client_for(lead).post("/api/v1/exports/", {"tastes": ["exported"], "ties": "keep"}, format="json")
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]
    job = wait_until(
        lambda: (r := client_for(lead).get(f"/api/v1/exports/{export_id}/").json())["state"] == "done" and r,
        timeout=60, what="the export job",
    )
    assert job["done"] == job["total"] == 6 and job["summary"]["rows"] == 5
    download = client_for(lead).get(job["download_url"])
    assert download.status_code == 200
    data = b"".join(download.streaming_content)
    assert pq.read_table(pa.BufferReader(data)).num_rows == 5


def test_the_admin_offers_exports(lead, taste):
    from django.test import Client

    browser = Client()
    browser.force_login(lead)
    page = browser.get("/admin/annotate/export/add/")
    assert page.status_code == 200 and b"Pick-a-Pic" in page.content
