"""manage.py sample_images: PNGs and a manifest from a model folder, a checkpoint or a taste."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from annotate import services
from annotate.models import BaseModel, Checkpoint
from tests.models import build_random_lora, build_tiny_flux


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    flux = build_tiny_flux(root / "flux")
    return flux, build_random_lora(flux, root / "lora", seed=3)


def run(*args) -> str:
    out = io.StringIO()
    call_command("sample_images", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_from_a_model_folder_without_the_database(models, tmp_path):
    flux, lora = models
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square\n")
    run("--model", str(flux), "--lora", str(lora), "--prompts", str(prompts), "--seeds", "0:3", "--out",
        str(tmp_path / "out"), "--steps", "2", "--size", "64", "--max-sequence-length", "32")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest) == 6
    assert {(m["prompt"], m["seed"]) for m in manifest} == {(p, s) for p in ("a red circle", "a blue square") for s in range(3)}
    assert manifest[0]["model"] == {"base": str(flux), "loras": [str(lora)]}
    assert all((tmp_path / "out" / m["file"]).read_bytes().startswith(b"\x89PNG") for m in manifest)
    assert "flat_share" in manifest[0]["diagnostics"]


@pytest.mark.django_db
def test_from_a_checkpoint_and_from_a_taste(models, tmp_path):
    flux, lora = models
    taste = services.taste_create(slug="portraits")
    base = BaseModel.objects.create(name="tiny", kind="flux", path=str(flux), default_steps=2, default_width=64,
                                    default_height=64, default_max_sequence_length=32)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.RETIRED)
    child = Checkpoint.objects.create(taste=taste, base_model=base, parent=root, lora_path=str(lora),
                                      status=Checkpoint.Status.CURRENT)
    taste.current_checkpoint = child
    taste.save()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    run("--checkpoint", str(child.pk), "--prompts", str(prompts), "--seeds", "0:1", "--out", str(tmp_path / "a"))
    run("--taste", "portraits", "--prompts", str(prompts), "--seeds", "0:1", "--out", str(tmp_path / "b"))
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text())[0] for d in "ab")
    assert a["model"]["loras"] == [str(lora)] and a["steps"] == 2 and a["width"] == 64
    assert (tmp_path / "a" / a["file"]).read_bytes() == (tmp_path / "b" / b["file"]).read_bytes()


@pytest.mark.django_db
def test_clear_errors(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    with pytest.raises(CommandError, match="no checkpoint 99"):
        run("--checkpoint", "99", "--prompts", str(prompts), "--out", str(tmp_path))
    with pytest.raises(CommandError, match="START:STOP"):
        run("--model", str(tmp_path), "--prompts", str(prompts), "--seeds", "7", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="model_index.json is missing"):
        run("--model", str(tmp_path), "--prompts", str(prompts), "--out", str(tmp_path / "o"))


def test_a_model_folder_is_sampled_with_its_own_defaults(tmp_path):
    """models/toy-flux carries chisel.json: without size or step flags it samples at 64 px and the toy's steps."""
    from sampler.toy import defaults as toy

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    run("--model", "models/toy-flux", "--prompts", str(prompts), "--seeds", "0:1", "--out", str(tmp_path / "out"))
    record = json.loads((tmp_path / "out" / "manifest.json").read_text())[0]
    expected = toy.SAMPLING["flux"]
    assert (record["width"], record["height"], record["steps"]) == (64, 64, expected["steps"])
    assert record["max_sequence_length"] == expected["max_sequence_length"]
    with PILImage.open(tmp_path / "out" / record["file"]) as image:
        assert image.size == (64, 64)


def test_a_broken_chisel_json_is_one_line(models, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(models[0], folder)
    (folder / "chisel.json").write_text("{not json")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    with pytest.raises(CommandError, match="chisel.json is not valid JSON"):
        run("--model", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "out"))
