"""Where exports write (annotate/exports.py, export_jobs.py): a card per export, dataset folders, and never a
file overwritten that the export did not write — from the command line, the API and the admin's jobs."""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import ManagementUtility

from annotate.export_jobs import export_run
from annotate.exports import CARD_MARK
from annotate.models import Export
from tests.conftest import client_for, make_lead
from tests.test_datasets import judged_world

# transaction=True: the command closes the database connection when it ends, as it does from a shell.
pytestmark = pytest.mark.django_db(transaction=True)
README = b"# My project\n\nHand-written, precious.\n"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """A management command as a shell runs it: its exit status, stdout and stderr."""
    try:
        ManagementUtility(["manage.py", *argv]).execute()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: int, err: str, *words: str) -> bool:
    lines = err.strip().splitlines()
    return code == 1 and len(lines) == 1 and "Traceback" not in err and all(w in lines[0] for w in words)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_export_from_a_repository_root_leaves_its_readme_alone(taste, tmp_path, monkeypatch, capsys):
    judged_world(taste)
    (tmp_path / "README.md").write_bytes(README)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "export_preferences", "--out", "demo.parquet")
    assert code == 0 and "card: demo.parquet.README.md" in out
    assert (tmp_path / "README.md").read_bytes() == README
    assert pq.read_metadata(tmp_path / "demo.parquet").num_rows == 4
    card = (tmp_path / "demo.parquet.README.md").read_text()
    assert CARD_MARK in card and "path: demo.parquet" in card and "| rows | 4 |" in card


@pytest.mark.parametrize("format", ["pickapic", "jsonl"])
def test_a_dataset_folder_loads_with_datasets_load_dataset(taste, tmp_path, capsys, format):
    from datasets import load_dataset

    judged_world(taste)
    folder = tmp_path / "portraits"
    code, _, err = run_cli(capsys, "export_preferences", "--out", f"{folder}/", "--format", format)
    assert code == 0, err
    extension = "parquet" if format == "pickapic" else "jsonl"
    assert (folder / "data" / f"train.{extension}").is_file()
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n") and f"path: data/train.{extension}" in card
    assert "images from outside Chisel's base models" in card  # judged_world's images have no base model
    assert "- text-to-image" in card and "- n<1K" in card
    from huggingface_hub import DatasetCard

    metadata = DatasetCard.load(folder / "README.md").data
    assert metadata.task_categories == ["text-to-image"] and metadata.size_categories == ["n<1K"]
    assert metadata.configs[0]["data_files"] == [{"split": "train", "path": f"data/train.{extension}"},
                                                 {"split": "validation", "path": f"data/validation.{extension}"}]
    dataset = load_dataset(str(folder))
    # No eval pairs: one of the four decisive prompts is held out, with every row of it.
    assert list(dataset) == ["train", "validation"] and (len(dataset["train"]), len(dataset["validation"])) == (3, 1)
    assert not set(dataset["train"]["caption"]) & set(dataset["validation"]["caption"])
    assert "| validation | 1 of 4 prompts held out by prompt (10%" in card
    assert set(dataset["train"]["label_0"]) <= {0.0, 1.0}


@pytest.mark.parametrize("extra", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_readme_chisel_did_not_write_is_never_overwritten(taste, tmp_path, capsys, extra):
    judged_world(taste)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_bytes(README)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(folder), *extra)
    assert refused(code, err, str(folder / "README.md"), "was not written by Chisel")
    assert digest(folder) == {"README.md": hashlib.sha256(README).hexdigest()}  # nothing else written either


def test_an_existing_export_is_replaced_only_with_overwrite(taste, tmp_path, capsys):
    judged_world(taste)
    out = tmp_path / "d.parquet"
    assert run_cli(capsys, "export_preferences", "--out", str(out))[0] == 0
    before = digest(tmp_path)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(out), "--ties", "keep")
    assert refused(code, err, str(out), "exists", "--overwrite")
    assert digest(tmp_path) == before
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(out), "--ties", "keep", "--overwrite")
    assert code == 0 and pq.read_metadata(out).num_rows == 5
    assert "ties kept as label 0.5 (1 rows)" in (tmp_path / "d.parquet.README.md").read_text()


def test_a_file_that_is_not_an_export_is_never_overwritten(taste, tmp_path, capsys):
    judged_world(taste)
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    (tmp_path / "notes.parquet").write_bytes(b"my own parquet")
    (tmp_path / "README.md").write_bytes(README)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "notes.parquet"))
    assert refused(code, err, "notes.parquet exists")
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "README.md"))
    assert refused(code, err, "README.md is an existing file")
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "x.parquet"), "--format", "jsonl")
    assert refused(code, err, "ends in .parquet but the format is jsonl")
    assert digest(tmp_path) == {"README.md": hashlib.sha256(README).hexdigest(),
                                "notes.parquet": hashlib.sha256(b"my own parquet").hexdigest()}


def test_a_jsonl_export_never_replaces_an_image_file_with_other_content(taste, tmp_path, capsys):
    judged_world(taste)
    assert run_cli(capsys, "export_preferences", "--out", str(tmp_path / "a.jsonl"))[0] == 0
    images = sorted((tmp_path / "images").iterdir())
    images[0].write_bytes(b"someone else's file")
    before = digest(tmp_path)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "b.jsonl"))
    assert refused(code, err, str(images[0]), "exists with other content")
    assert digest(tmp_path) == before


def test_keeping_ties_warns_about_diffusers_dpo_script(taste, tmp_path, capsys):
    judged_world(taste)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "t.parquet"), "--ties", "keep")
    assert code == 0
    (line,) = err.strip().splitlines()
    assert "1 ties kept as label 0.5" in line and "train_diffusion_dpo.py" in line and "image 0 wins" in line
    assert run_cli(capsys, "export_preferences", "--out", str(tmp_path / "u.parquet"))[2] == ""


def test_created_at_has_pickapic_v2s_type_and_concatenates_with_it(taste, tmp_path):
    from datasets import Dataset, concatenate_datasets

    from annotate.exports import ExportOptions, export_preferences
    from annotate.models import Judgement

    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "d.parquet"))
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.schema.field("created_at").type == pa.timestamp("ns")
    stamps = {j.pk: j.created_at.replace(tzinfo=None) for j in Judgement.objects.all()}  # stored in UTC
    for row in table.to_pylist():
        assert row["created_at"].to_pydatetime() == stamps[row["ranking_id"]]
    v2 = pa.table({"caption": ["a cat"], "created_at": pa.array([0], pa.timestamp("ns"))})
    mine = Dataset(table.select(["caption", "created_at"]))
    assert len(concatenate_datasets([mine, Dataset(v2)])) == 5


def test_export_jobs_write_a_new_folder_and_never_touch_an_old_one(taste, settings, capsys):
    judged_world(taste)
    lead = make_lead()
    export = Export.objects.create(requested_by=lead, options={"ties": "keep"})
    root = Path(settings.CHISEL_EXPORT_ROOT)
    stale = root / f"export-{export.pk}"  # left by an earlier database that handed out the same id
    stale.mkdir(parents=True)
    (stale / "README.md").write_bytes(README)
    (stale / f"chisel-export-{export.pk}.parquet").write_bytes(b"old data")
    before = digest(root)

    export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.state == Export.State.DONE, export.error
    assert digest(stale) == {k.split("/", 1)[1]: v for k, v in before.items()}
    assert export.file_name.startswith(f"export-{export.pk}-") and export.file_name.endswith("/data/train.parquet")
    folder = root / export.file_name.split("/")[0]
    assert CARD_MARK in (folder / "README.md").read_text()
    download = client_for(lead).get(f"/api/v1/exports/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].endswith(f'filename="chisel-export-{export.pk}.parquet"')
    assert pq.read_table(pa.BufferReader(b"".join(download.streaming_content))).num_rows == 5

    second = Export.objects.create(requested_by=lead, options={"format": "jsonl"})
    export_run(export_id=second.pk)
    second.refresh_from_db()
    assert second.state == Export.State.DONE and second.file_name.split("/")[0] != export.file_name.split("/")[0]
    rows = [json.loads(line) for line in (root / second.file_name).read_text().splitlines()]
    assert len(rows) == 4 and all((root / second.file_name).parent.joinpath(r["image_0_file"]).is_file() for r in rows)


def test_the_trainer_reads_a_dataset_folder_and_refuses_a_file_that_is_not_parquet(taste, tmp_path):
    from annotate.exports import ExportOptions, export_preferences
    from trainer.data import DatasetError, load_pairs

    judged_world(taste)
    export_preferences(ExportOptions(out=tmp_path / "folder"))
    pairs, ties = load_pairs(tmp_path / "folder")
    assert (len(pairs), ties) == (3, 0)  # the train split: one of the four prompts is held out for validation
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match="notes.parquet is not a readable parquet file"):
        load_pairs(tmp_path / "notes.parquet")
