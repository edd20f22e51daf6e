"""Where exports write (annotate/exports.py, export_jobs.py): a card per export, dataset folders, and never a
file overwritten that the export did not write — from the command line, the API and the admin's jobs."""

import hashlib
import io
import json
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from django.core.management import ManagementUtility
from PIL import Image as PILImage

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
    dataset = load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))  # datasets caches a folder by its name
    # No eval pairs: one of the four decisive prompts is held out, with every row of it.
    assert list(dataset) == ["train", "validation"] and (len(dataset["train"]), len(dataset["validation"])) == (3, 1)
    assert not set(dataset["train"]["caption"]) & set(dataset["validation"]["caption"])
    assert "| validation | 1 of 4 prompts held out by prompt (10%" in card
    assert set(dataset["train"]["label_0"]) <= {0.0, 1.0}


def test_a_jsonl_folder_whose_train_rows_carry_no_flags_loads_its_flagged_validation_row(taste, tmp_path, capsys):
    """JSON has no types: `datasets` took them from the train file, where empty flag lists read as lists of nulls,
    and could not load a validation row with a flag (a CI failure, by the coin that puts image A left or right).
    The card declares the columns' types."""
    from datasets import load_dataset

    from annotate.models import Judgement

    judged_world(taste)
    first = tmp_path / "first"
    assert run_cli(capsys, "export_preferences", "--out", f"{first}/", "--format", "jsonl")[0] == 0
    (held_out,) = {json.loads(line)["caption"] for line in (first / "data" / "validation.jsonl").read_text().splitlines()}
    Judgement.objects.update(flags_a=[], flags_b=[])
    Judgement.objects.filter(pair__prompt__text=held_out).update(flags_b=["artifacts"])
    folder = tmp_path / "flagged"
    assert run_cli(capsys, "export_preferences", "--out", f"{folder}/", "--format", "jsonl")[0] == 0
    dataset = load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert dataset["validation"]["flags_1"] == [["artifacts"]] and dataset["train"]["flags_1"] == [[], [], []]
    assert dataset["train"].features["flags_1"].feature.dtype == "string"


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


# Pick-a-Pic v2's exact schema, written out from its dataset card (huggingface.co/datasets/yuvalkirstain/pickapic_v2,
# `dataset_info.features`), independently of trainer/pickapic.py.
PICKAPIC_V2 = pa.schema([
    ("are_different", pa.bool_()), ("best_image_uid", pa.string()), ("caption", pa.string()),
    ("created_at", pa.timestamp("ns")), ("has_label", pa.bool_()), ("image_0_uid", pa.string()),
    ("image_0_url", pa.string()), ("image_1_uid", pa.string()), ("image_1_url", pa.string()),
    ("jpg_0", pa.binary()), ("jpg_1", pa.binary()), ("label_0", pa.float64()), ("label_1", pa.float64()),
    ("model_0", pa.string()), ("model_1", pa.string()), ("ranking_id", pa.int64()), ("user_id", pa.int64()),
    ("num_example_per_prompt", pa.int64()), ("__index_level_0__", pa.int64()),
])


def decided_world(taste, verdicts: str, *, eval_pairs: int = 0, checkpoint=None) -> None:
    """One pair per verdict ("a" or "b": which image won), judged once; the first `eval_pairs` pairs are held-out
    eval pairs."""
    from annotate import services
    from annotate.images import image_store
    from annotate.models import Pair, Prompt, Round
    from tests.conftest import make_annotator, png_bytes

    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1)
    for index in range(len(verdicts)):
        prompt = Prompt.objects.create(text=f"a lighthouse number {index}")
        a, b = (image_store(prompt=prompt, data=png_bytes((30 * index, 200 * side, 90), (16, 12)), seed=side,
                            checkpoint=checkpoint) for side in (0, 1))
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, overlap=1, seed=index)
    annotator = make_annotator(taste)
    for _ in verdicts:
        (assignment,) = services.assignment_claim(annotator=annotator, taste=taste)
        verdict = verdicts[int(assignment.pair.prompt.text.rsplit(" ", 1)[1])]
        screen = "left" if (verdict == "a") == assignment.left_is_a else "right"
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                  client_uuid=uuid.uuid4(), duration_ms=900)
    eval_ids = Pair.objects.order_by("seed").values_list("pk", flat=True)[:eval_pairs]
    Pair.objects.filter(pk__in=list(eval_ids)).update(kind=Pair.Kind.EVAL)


def dpo_pixels(image: PILImage.Image, resolution: int = 512) -> torch.Tensor:
    """train_diffusion_dpo.py's train_transforms (L671-679) with --no_hflip: Resize (shorter side, bilinear),
    CenterCrop, ToTensor, Normalize([0.5], [0.5]); re-done with PIL and torch (the script uses torchvision)."""
    width, height = image.size
    scale = resolution / min(width, height)
    image = image.resize((max(resolution, int(width * scale)), max(resolution, int(height * scale))),
                         PILImage.Resampling.BILINEAR)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)  # (C, H, W)
    return (pixels - 0.5) / 0.5


@pytest.mark.django_db
def test_diffusers_dpo_script_reads_the_folder_with_its_defaults_preferred_image_first(taste, tmp_path):
    """diffusers' examples/research_projects/diffusion_dpo/train_diffusion_dpo.py (at 58eb52c), its data path re-done
    here without vendoring it: --dataset_split_name defaults to "validation" (L180-185) and the dataset is
    `load_dataset(args.dataset_name, split=args.dataset_split_name)` (L665-669); preprocess_train (L681-697) opens
    jpg_0 / jpg_1 as RGB, swaps the two where `label_0 == 0` so the preferred image comes first, and concatenates
    them on the channel axis; captions come from the "caption" column (L449); collate_fn stacks (L707-712)."""
    from datasets import load_dataset
    from django.core.files.storage import default_storage

    from annotate.exports import ExportOptions, export_preferences
    from annotate.models import Judgement

    decided_world(taste, "abba", eval_pairs=2)  # eval pairs: one won by image a, one by image b
    export_preferences(ExportOptions(out=tmp_path / "portraits"))
    assert "| validation | the held-out eval pairs" in (tmp_path / "portraits" / "README.md").read_text()

    # The script's defaults; --cache_dir (default None) set only because datasets caches a folder by its name.
    train_dataset = load_dataset(str(tmp_path / "portraits"), cache_dir=str(tmp_path / "cache"), split="validation")
    assert sorted(train_dataset["pair_kind"]) == ["eval", "eval"] and sorted(train_dataset["label_0"]) == [0.0, 1.0]
    assert all(isinstance(caption, str) and caption for caption in train_dataset["caption"])

    def preprocess_train(examples):
        all_pixel_values = [[dpo_pixels(PILImage.open(io.BytesIO(data)).convert("RGB")) for data in examples[column]]
                            for column in ("jpg_0", "jpg_1")]
        combined = []
        for pair, label_0 in zip(zip(*all_pixel_values), examples["label_0"]):
            if label_0 == 0:
                pair = pair[::-1]
            combined.append(torch.cat(pair, dim=0))
        examples["pixel_values"] = combined
        return examples

    train_dataset = train_dataset.with_transform(preprocess_train)
    batch = torch.stack([example["pixel_values"] for example in train_dataset]).float()
    assert batch.shape == (2, 6, 512, 512)
    for example, pixels in zip(train_dataset, batch):
        judgement = Judgement.objects.select_related("pair__image_a", "pair__image_b").get(pair_id=example["pair_id"])
        won, lost = ((judgement.pair.image_a, judgement.pair.image_b) if judgement.choice == "a"
                     else (judgement.pair.image_b, judgement.pair.image_a))
        for half, image in ((pixels[:3], won), (pixels[3:], lost)):
            with default_storage.open(image.file.name, "rb") as handle:
                assert torch.equal(half, dpo_pixels(PILImage.open(handle).convert("RGB")))


@pytest.mark.django_db
def test_the_export_concatenates_with_a_table_in_pickapic_v2s_exact_schema(taste, tmp_path):
    from datasets import Dataset, concatenate_datasets, load_dataset

    from annotate.exports import ExportOptions, export_preferences

    decided_world(taste, "abab")
    export_preferences(ExportOptions(out=tmp_path / "mine"))
    data = tmp_path / "mine" / "data"
    for split in ("train", "validation"):
        schema = pq.read_schema(data / f"{split}.parquet")
        assert pa.schema(list(schema)[:len(PICKAPIC_V2)]) == PICKAPIC_V2  # v2's names, order and types, first
    mine = load_dataset(str(tmp_path / "mine"), cache_dir=str(tmp_path / "cache"))
    assert sorted([*mine["train"]["__index_level_0__"], *mine["validation"]["__index_level_0__"]]) == [0, 1, 2, 3]
    v2 = pa.Table.from_pylist([{
        "are_different": True, "best_image_uid": "u0", "caption": "a cat", "created_at": datetime(2023, 5, 1, 12),
        "has_label": True, "image_0_uid": "u0", "image_0_url": "https://example.org/u0.jpg", "image_1_uid": "u1",
        "image_1_url": "https://example.org/u1.jpg", "jpg_0": b"\xff\xd8", "jpg_1": b"\xff\xd8", "label_0": 1.0,
        "label_1": 0.0, "model_0": "sdxl", "model_1": "sdxl", "ranking_id": 7, "user_id": 9,
        "num_example_per_prompt": 1, "__index_level_0__": 12,
    }], schema=PICKAPIC_V2)
    both = concatenate_datasets([mine["train"], Dataset(v2)])
    assert len(both) == len(mine["train"]) + 1 and both[-1]["caption"] == "a cat" and both[-1]["taste"] is None
    v2_only = concatenate_datasets([Dataset(v2), mine["validation"].select_columns(PICKAPIC_V2.names)])
    assert v2_only.features == Dataset(v2).features and len(v2_only) == 1 + len(mine["validation"])


@pytest.mark.django_db
@pytest.mark.parametrize("public", ["", "https://chisel.example.org/"])
def test_image_urls_are_absolute_under_the_public_url_and_serve_the_image(taste, tmp_path, settings, public):
    from annotate.exports import ExportOptions, export_preferences

    settings.CHISEL_PUBLIC_URL = public
    decided_world(taste, "ab")
    export_preferences(ExportOptions(out=tmp_path / "d.parquet"))
    client = client_for(make_lead())
    for row in pq.read_table(tmp_path / "d.parquet").to_pylist():
        for side in ("0", "1"):
            url = row[f"image_{side}_url"]
            if public:
                assert url.startswith("https://chisel.example.org/media/")
                path = url.removeprefix("https://chisel.example.org")
            else:
                assert not url.startswith(("http", "/"))
                path = f"/media/{url}"
            assert b"".join(client.get(path).streaming_content) == row[f"jpg_{side}"]
    card = (tmp_path / "d.parquet.README.md").read_text()
    assert ("absolute, under https://chisel.example.org/" in card) == bool(public)


@pytest.mark.django_db
@pytest.mark.parametrize("stated", ["chisel.json", "model card"])
def test_the_card_carries_the_licence_the_model_folder_states(taste, tmp_path, stated):
    from huggingface_hub import DatasetCard

    from annotate.exports import ExportOptions, export_preferences
    from annotate.models import BaseModel, Checkpoint

    folder = tmp_path / "model"
    folder.mkdir()
    if stated == "chisel.json":
        (folder / "chisel.json").write_text(json.dumps({"license": "apache-2.0"}))
        expected = {"license": "apache-2.0"}
    else:  # as FLUX.1 [dev]'s Hub card states it; its relative link points into its own repository
        (folder / "README.md").write_text("---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n"
                                          "license_link: LICENSE.md\n---\n# FLUX.1 [dev]\n")
        expected = {"license": "other", "license_name": "flux-1-dev-non-commercial-license"}
    base = BaseModel.objects.create(name="my-model", kind=BaseModel.Kind.FLUX, path=str(folder))
    decided_world(taste, "ab", checkpoint=Checkpoint.objects.create(taste=taste, base_model=base))
    export_preferences(ExportOptions(out=tmp_path / "out"))
    metadata = DatasetCard.load(tmp_path / "out" / "README.md").data.to_dict()
    assert {k: metadata.get(k) for k in ("license", "license_name", "license_link") if k in metadata} == expected
    assert f"- `my-model`: {expected.get('license_name', 'apache-2.0')}" in (tmp_path / "out" / "README.md").read_text()


def test_the_validation_share_is_a_share_of_the_prompts(taste, tmp_path, capsys):
    judged_world(taste)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "half"), "--validation-share", "0.5")
    assert code == 0, err
    validation = pq.read_table(tmp_path / "half" / "data" / "validation.parquet").column("caption").to_pylist()
    train = pq.read_table(tmp_path / "half" / "data" / "train.parquet").column("caption").to_pylist()
    assert (len(train), len(validation)) == (2, 2) and not set(train) & set(validation)
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "all"), "--validation-share", "1")
    assert refused(code, err, "--validation-share 1", "between 0 and 1") and not (tmp_path / "all").exists()


def test_a_bad_date_is_refused_with_one_line(taste, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(tmp_path / "d.parquet"), "--since", "garbage")
    assert refused(code, err, "'garbage' is not an ISO date")


def test_a_folder_exported_again_loads_its_new_rows_not_datasets_cached_ones(taste, tmp_path, capsys):
    """`datasets` keys its cache of a local folder on the card's YAML block; the card's dataset_info changes with
    the files, so the same folder exported again is read afresh (the default cache, as a user has it)."""
    from datasets import load_dataset

    judged_world(taste)
    folder = tmp_path / "again"
    cache = str(tmp_path / "cache")
    assert run_cli(capsys, "export_preferences", "--out", str(folder))[0] == 0
    assert len(load_dataset(str(folder), cache_dir=cache)["train"]) == 3
    assert run_cli(capsys, "export_preferences", "--out", str(folder), "--ties", "keep", "--overwrite")[0] == 0
    assert len(load_dataset(str(folder), cache_dir=cache)["train"]) + len(
        load_dataset(str(folder), cache_dir=cache)["validation"]) == 5


@pytest.mark.parametrize("format", ["pickapic", "jsonl"])
def test_a_validation_split_without_rows_is_left_out_and_an_old_one_removed(taste, tmp_path, capsys, format):
    """`datasets` refuses to load an empty split: one prompt gives no validation split, and the card says so."""
    from datasets import load_dataset

    decided_world(taste, "ab")
    folder = tmp_path / "few"
    extension = "parquet" if format == "pickapic" else "jsonl"
    assert run_cli(capsys, "export_preferences", "--out", str(folder), "--format", format)[0] == 0
    assert (folder / "data" / f"validation.{extension}").is_file()
    from annotate.models import Judgement

    last = Judgement.objects.order_by("created_at").last().created_at  # the second export: one prompt
    code, _, err = run_cli(capsys, "export_preferences", "--out", str(folder), "--format", format, "--overwrite",
                           "--since", last.isoformat())
    assert code == 0, err
    assert not (folder / "data" / f"validation.{extension}").exists()
    card = (folder / "README.md").read_text()
    assert "split: validation" not in card and "| validation | none: no row fell in it" in card
    assert "so give the script `--dataset_split_name train`" in card
    assert list(load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))) == ["train"]
