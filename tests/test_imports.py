"""Importing preference files (annotate/imports.py, import_sources.py): JSONL beside parquet, provenance kept, and
every bad file refused with one line, exit status 1 and nothing written."""

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate import services
from annotate.exports import ExportOptions, export_preferences
from annotate.imports import import_preferences
from annotate.models import Image, Judgement
from tests.conftest import png_bytes
from tests.test_datasets import good_row, judged_world, nothing_written, read, write_parquet
from tests.test_exports import refused, run_cli

pytestmark = pytest.mark.django_db(transaction=True)


def write_jsonl(folder: Path, rows: list[dict]) -> Path:
    """A JSONL file as the exporter writes it: images as files named in image_0_file / image_1_file."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, row in enumerate(rows):
        row = dict(row)
        for side in ("0", "1"):
            data = row.pop(f"jpg_{side}")
            (folder / "images" / f"{index}-{side}.png").write_bytes(data)
            row.setdefault(f"image_{side}_file", f"images/{index}-{side}.png")
        lines.append(json.dumps(row))
    path = folder / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def text(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def truncated(folder: Path) -> Path:
    path = write_parquet(folder / "whole.parquet", [good_row(), good_row(caption="two")])
    data = path.read_bytes()
    (folder / "cut.parquet").write_bytes(data[: len(data) * 2 // 3])
    return folder / "cut.parquet"


def damaged(folder: Path) -> Path:
    """A parquet file whose footer is whole but whose first data page is garbage."""
    path = write_parquet(folder / "whole.parquet", [good_row(), good_row(caption="two")])
    data = bytearray(path.read_bytes())
    data[4:200] = b"\xff" * 196
    (folder / "damaged.parquet").write_bytes(bytes(data))
    return folder / "damaged.parquet"


BAD_FILES = {
    "text-file": (lambda f: text(f / "notes.txt", "# Notes\nnot data\n"),
                  "neither a Pick-a-Pic parquet file nor JSONL"),
    "empty-file": (lambda f: text(f / "empty.parquet", ""), "is empty"),
    "jsonl-forced-as-parquet": (lambda f: write_jsonl(f, [good_row()]), "is not a readable parquet file"),
    "jsonl-of-something-else": (lambda f: text(f / "x.jsonl", '{"a": 1}\n'),
                                "line 1: caption is missing"),
    "jsonl-not-json": (lambda f: text(f / "x.jsonl", '{"caption": \n'), "line 1: is not JSON"),
    "truncated-parquet": (truncated, "is not a readable parquet file, or it is truncated"),
    "damaged-parquet": (damaged, "damaged.parquet"),
    "nul-in-caption": (lambda f: write_parquet(f / "nul.parquet", [good_row(), good_row(caption="a\x00b")]),
                       "row 1: caption contains a NUL byte"),
    "nul-in-jsonl-caption": (lambda f: write_jsonl(f, [good_row(caption="a\x00b")]), "line 1: caption contains a NUL byte"),
    "bad-params-json": (lambda f: write_parquet(f / "p.parquet", [good_row(params_0="{guidance: 3.5")]),
                        "row 0: params_0 is not valid JSON"),
    "params-not-an-object": (lambda f: write_parquet(f / "p.parquet", [good_row(params_1="[1, 2]")]),
                             "row 0: params_1 is a JSON list"),
    "negative-duration": (lambda f: write_parquet(f / "d.parquet", [good_row(duration_ms=None), good_row(duration_ms=-5)]),
                          "row 1: duration_ms is -5; expected a whole number of milliseconds"),
    "bad-shown-left": (lambda f: write_parquet(f / "s.parquet", [good_row(shown_left=2)]), "row 0: shown_left is 2"),
    "bad-created-at": (lambda f: write_jsonl(f, [good_row(created_at="yesterday")]), "line 1: created_at is 'yesterday'"),
    "image-outside-folder": (lambda f: write_jsonl(f, [good_row(image_0_file="../../etc/passwd")]),
                             "line 1: image_0_file '../../etc/passwd' points outside"),
    "image-file-missing": (lambda f: write_jsonl(f, [good_row(image_1_file="images/gone.png")]),
                           "line 1: image_1_file 'images/gone.png' names no file"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_each_bad_file_is_refused_with_one_line_and_nothing_written(taste, tmp_path, media_root, capsys, case):
    make, message = BAD_FILES[case]
    folder = tmp_path / "in"
    folder.mkdir()
    path = make(folder)
    extra = ["--format", "pickapic"] if case == "jsonl-forced-as-parquet" else []
    code, out, err = run_cli(capsys, "import_preferences", str(path), "--taste", taste.slug, "--source", "bad", *extra)
    assert refused(code, err, str(path), message), err
    assert "nothing was imported" in err and out == ""
    assert nothing_written(media_root) and not Judgement.objects.exists()


def test_many_bad_rows_are_counted_on_one_line(taste, tmp_path, capsys):
    rows = [good_row(caption=f"row {i}", jpg_0=png_bytes((i, 9, 9)), duration_ms=-i - 1) for i in range(8)]
    path = write_parquet(tmp_path / "many.parquet", rows)
    code, _, err = run_cli(capsys, "import_preferences", str(path), "--taste", taste.slug, "--source", "many")
    assert refused(code, err, "8 of 8 rows are invalid", "row 0: duration_ms", "row 4: duration_ms", "… and 3 more")


def test_jsonl_export_imports_back_to_the_same_rows(taste, tmp_path, capsys):
    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "out" / "d.jsonl", format="jsonl", ties="keep"))
    services.taste_create(slug="landscapes")
    code, out, err = run_cli(capsys, "import_preferences", str(tmp_path / "out" / "d.jsonl"), "--taste", "landscapes",
                             "--source", "jsonl-roundtrip")
    assert code == 0, err
    assert "Imported 5 rows (1 ties" in out and err == ""
    export_preferences(ExportOptions(out=tmp_path / "original.parquet", tastes=[taste.slug], ties="keep"))
    export_preferences(ExportOptions(out=tmp_path / "again.parquet", tastes=["landscapes"], ties="keep"))
    assert read(tmp_path / "original.parquet") == read(tmp_path / "again.parquet")
    code, _, err = run_cli(capsys, "import_preferences", str(tmp_path / "out" / "d.jsonl"), "--taste", "landscapes",
                           "--source", "jsonl-roundtrip")
    assert refused(code, err, "was imported before from source 'jsonl-roundtrip'")


def test_import_keeps_the_sources_ids_and_exports_them_again(taste, tmp_path):
    row = good_row(user_id=4242, ranking_id=987654, image_0_uid="uid-left", image_1_uid="uid-right",
                   params_0=json.dumps({"guidance": 5.0}))
    import_preferences(path=write_parquet(tmp_path / "src.parquet", [row]), taste=taste, source="v2")
    image = Image.objects.get(sha256__isnull=False, params__guidance=5.0)
    assert image.params["imported"] == {"image_uid": "uid-left", "user_id": 4242, "ranking_id": 987654}
    export_preferences(ExportOptions(out=tmp_path / "out.parquet"))
    (exported,) = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert (exported["user_id"], exported["ranking_id"]) == (4242, 987654)
    assert (exported["image_0_uid"], exported["image_1_uid"], exported["best_image_uid"]) == ("uid-left", "uid-right",
                                                                                             "uid-left")
    assert json.loads(exported["params_0"]) == {"guidance": 5.0}


def test_timezone_naive_created_at_is_read_as_utc_without_warnings(taste, tmp_path):
    naive = datetime(2023, 5, 1, 12, 30, 0, 123456)
    nanoseconds = int(naive.replace(tzinfo=UTC).timestamp()) * 10**9 + 123456789  # as v2 stores it, to the ns
    table = pa.table({
        "caption": [f"c{i}" for i in range(3)],
        "jpg_0": [png_bytes((i, 1, 1)) for i in range(3)],
        "jpg_1": [png_bytes((i, 200, 1)) for i in range(3)],
        "label_0": [1.0, 0.0, 1.0],
        "created_at": pa.array([nanoseconds] * 3, pa.timestamp("ns")),
    })
    pq.write_table(table, tmp_path / "naive.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_preferences(path=tmp_path / "naive.parquet", taste=taste, source="naive")
    assert set(Judgement.objects.values_list("created_at", flat=True)) == {naive.replace(tzinfo=UTC)}


def test_a_dataset_folder_imports_from_its_split_files(taste, tmp_path, capsys):
    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "folder"))
    services.taste_create(slug="landscapes")
    code, out, err = run_cli(capsys, "import_preferences", str(tmp_path / "folder"), "--taste", "landscapes",
                             "--source", "folder")
    assert code == 0 and "Imported 4 rows" in out, err
    exported = read(tmp_path / "folder" / "data" / "train.parquet") + read(
        tmp_path / "folder" / "data" / "validation.parquet")  # both splits are imported
    again = read(Path(export_preferences(ExportOptions(out=tmp_path / "again.parquet", tastes=["landscapes"])).path))
    assert sorted(exported, key=lambda r: (r["caption"], r["label_0"])) == again


def test_a_bad_row_in_a_folders_validation_split_is_named_by_file_and_nothing_is_written(taste, tmp_path, capsys):
    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "folder"))
    validation = tmp_path / "folder" / "data" / "validation.parquet"
    table = pq.read_table(validation)
    pq.write_table(table.set_column(table.schema.get_field_index("label_0"), "label_0",
                                    pa.array([0.3] * len(table), pa.float64())), validation)
    services.taste_create(slug="landscapes")
    before = Judgement.objects.count()
    code, _, err = run_cli(capsys, "import_preferences", str(tmp_path / "folder"), "--taste", "landscapes",
                           "--source", "folder")
    assert refused(code, err, "validation.parquet row 0: label_0") and Judgement.objects.count() == before
