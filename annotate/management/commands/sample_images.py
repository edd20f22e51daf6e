"""manage.py sample_images (--checkpoint ID | --taste SLUG | --model DIR) --prompts FILE --seeds A:B --out DIR"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.models import Checkpoint, Taste
from annotate.sampling import checkpoint_spec
from sampler.model_defaults import ModelDefaultsError, read_model_defaults
from sampler.spec import ModelSpec, SampleParams


def seed_range(text: str) -> range:
    try:
        start, stop = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise CommandError(f"--seeds takes START:STOP (e.g. 0:16), not '{text}'.") from exc
    if stop <= start:
        raise CommandError(f"--seeds {text} is empty.")
    return range(start, stop)


class Command(BaseCommand):
    help = "Write PNGs and a JSON manifest for prompts × seeds, from a checkpoint, a taste's current one, or a model folder."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", type=int, help="a stored checkpoint's id")
        source.add_argument("--taste", help="a taste's slug: its current checkpoint")
        source.add_argument("--model", type=Path, help="a diffusers model folder (no database needed); sampled with "
                            "its chisel.json's defaults where it has one")
        parser.add_argument("--lora", type=Path, action="append", default=[], help="with --model: LoRA folders, in order")
        parser.add_argument("--prompts", type=Path, required=True, help="a text file, one prompt per line")
        parser.add_argument("--seeds", type=seed_range, default=range(0, 4))
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--steps", type=int)
        parser.add_argument("--guidance", type=float)
        parser.add_argument("--size", type=int, help="width and height in pixels")
        parser.add_argument("--max-sequence-length", type=int, help="FLUX T5 length (e.g. 32 for tiny models)")
        parser.add_argument("--batch", type=int, default=4)

    def handle(self, *args, **options):
        from sampler.generate import generate
        from sampler.loading import ModelLoadError, pipelines

        spec, defaults = self.source(options)
        prompts = [line.strip() for line in options["prompts"].read_text().splitlines() if line.strip()]
        if not prompts:
            raise CommandError(f"{options['prompts']} holds no prompts.")
        size = options["size"]
        params = SampleParams(
            steps=options["steps"] or defaults.get("steps", 28),
            guidance=options["guidance"] if options["guidance"] is not None else defaults.get("guidance", 3.5),
            width=size or defaults.get("width", 1024),
            height=size or defaults.get("height", 1024),
            max_sequence_length=options["max_sequence_length"] or defaults.get("max_sequence_length"),
        )
        try:
            pipeline = pipelines.get(spec)
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from exc
        jobs = [(p, s) for p in prompts for s in options["seeds"]]
        out: Path = options["out"]
        out.mkdir(parents=True, exist_ok=True)
        manifest = []
        model = {"base": spec.base_path, "loras": list(spec.lora_paths)}
        batch = max(1, options["batch"])
        with tqdm(total=len(jobs), unit="image", desc="sampling") as bar:
            for start in range(0, len(jobs), batch):
                chunk = jobs[start : start + batch]
                images = generate(pipeline, prompts=[p for p, _ in chunk], seeds=[s for _, s in chunk],
                                  params=params, model=model)
                for image in images:
                    name = f"{prompts.index(image.prompt):03d}-seed{image.seed}.png"
                    (out / name).write_bytes(image.png)
                    manifest.append({"file": name, **image.params, "diagnostics": image.diagnostics})
                bar.update(len(chunk))
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        self.stdout.write(f"Wrote {len(manifest)} images and manifest.json to {out}")

    def source(self, options) -> tuple[ModelSpec, dict]:
        if options["model"]:
            try:  # the folder's own defaults (chisel.json): a 64 px toy is not sampled at 1024 px and 28 steps
                defaults = read_model_defaults(options["model"]).sampling
            except ModelDefaultsError as exc:
                raise CommandError(str(exc)) from exc
            return ModelSpec(str(options["model"]), tuple(str(p) for p in options["lora"])), defaults
        if options["lora"]:
            raise CommandError("--lora goes with --model; a stored checkpoint brings its own LoRA chain.")
        if options["checkpoint"] is not None:
            checkpoint = Checkpoint.objects.select_related("base_model").filter(pk=options["checkpoint"]).first()
            if checkpoint is None:
                raise CommandError(f"There is no checkpoint {options['checkpoint']}.")
        else:
            taste = Taste.objects.filter(slug=options["taste"]).select_related("current_checkpoint__base_model").first()
            if taste is None:
                raise CommandError(f"There is no taste '{options['taste']}'.")
            if taste.current_checkpoint is None:
                raise CommandError(f"Taste '{taste.slug}' has no current checkpoint yet.")
            checkpoint = taste.current_checkpoint
        base = checkpoint.base_model
        defaults = {"steps": base.default_steps, "guidance": base.default_guidance,
                    "width": base.default_width, "height": base.default_height,
                    "max_sequence_length": base.default_max_sequence_length}
        return checkpoint_spec(checkpoint), defaults
