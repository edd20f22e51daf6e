"""manage.py toy_model build|evaluate: pretrain a tiny FLUX (or SD) pipeline on the toy world, or measure one."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Build (pretrain and save) the tiny FLUX or SD toy model, or evaluate a saved one on held-out seeds."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        build = actions.add_parser("build", help="Pretrain on the toy world and save with save_pretrained.")
        build.add_argument(
            "--out", type=Path, default=None,
            help="Default: models/toy-flux or models/toy-sd. An existing folder is replaced only if a build wrote it "
                 "(it holds toy_build.json).",
        )
        build.add_argument(
            "--family", choices=("flux", "sd"), default="flux",
            help="sd: a Stable Diffusion UNet trained over the FLUX toy model's VAE and CLIP encoder (--flux-model).",
        )
        build.add_argument(
            "--flux-model", type=Path, default=Path("models/toy-flux"),
            help="The FLUX toy model whose VAE and text encoders --family sd and --transformer-only build over.",
        )
        build.add_argument(
            "--transformer-only", action="store_true",
            help="FLUX: train only the transformer, over --flux-model's VAE and text encoders (kept byte for byte, "
                 "as the toy SD model shares them); ~12 min on 2 cores, against ~16 min from scratch.",
        )
        build.add_argument("--seed", type=int, default=0)
        build.add_argument(
            "--minutes", type=float, default=None,
            help="Hard cap on training time (default: 11 for SD, 15 for --transformer-only, 20 for FLUX from scratch); "
                 "a build that hits it stops early and is no longer reproducible.",
        )
        build.add_argument("--no-evaluate", action="store_true", help="Skip the evaluation after saving.")
        evaluate = actions.add_parser("evaluate", help="Caption adherence and background modes on held-out seeds.")
        evaluate.add_argument("--model", type=Path, default=Path("models/toy-flux"))
        for sub in (build, evaluate):
            sub.add_argument("--images", type=int, default=96, help="How many images to evaluate on.")
            sub.add_argument("--steps", type=int, default=None, help="Inference steps (default: the toy default).")
            sub.add_argument("--guidance", type=float, default=None)

    def handle(self, *args, action, **options):
        # The ML stack loads only here: other commands and web requests do not pay for it.
        import torch

        from sampler.toy import evaluate

        torch.set_num_threads(2)
        steps = options["steps"]  # None: the toy default of the model's family
        guidance = options["guidance"] if options["guidance"] is not None else evaluate.DEFAULT_GUIDANCE
        if action == "build":
            try:
                model = self.build_sd(options) if options["family"] == "sd" else self.build_flux(options)
            except FileExistsError as exc:  # --out holds files no build wrote: nothing was trained or touched
                raise CommandError(str(exc)) from exc
        else:
            model = options["model"]
        if model is None:
            return
        if not (model / "model_index.json").is_file():
            raise CommandError(f"{model} is not a diffusers model folder.")
        from diffusers import DiffusionPipeline

        started = time.monotonic()
        pipeline = DiffusionPipeline.from_pretrained(model)
        result = evaluate.evaluate(pipeline, options["images"], steps=steps, guidance=guidance)
        self.stdout.write(f"{model}: {result.summary()} ({time.monotonic() - started:.0f} s)")

    def build_flux(self, options) -> Path | None:
        from sampler.toy import pretrain

        out = options["out"] or Path("models/toy-flux")
        source = options["flux_model"] if options["transformer_only"] else None
        if source is not None:
            self.require_flux(source)
        minutes = options["minutes"] or (15.0 if source is not None else 20.0)
        report = pretrain.build(out, pretrain.Recipe(seed=options["seed"]), minutes=minutes, autoencoder_from=source)
        vae = (f"VAE and text encoders kept from {source}" if source is not None else
               f"VAE {report.vae_steps} steps in {report.vae_seconds:.0f} s (loss {report.vae_loss:.4f})")
        self.stdout.write(
            f"Saved {report.out} ({report.size_bytes / 1e6:.1f} MB) in {report.total_seconds / 60:.1f} min: {vae}, "
            f"transformer {report.transformer_steps} steps in {report.transformer_seconds:.0f} s "
            f"(loss {report.transformer_loss:.4f})."
        )
        if report.stopped_early:
            self.stderr.write("The time cap stopped training early: this build is not reproducible.")
        return None if options["no_evaluate"] else out

    @staticmethod
    def require_flux(source: Path) -> None:
        """Refuse, in one line, a folder that is not a FLUX model: --transformer-only builds over its VAE."""
        from sampler.model_index import ModelLoadError, model_kind

        try:
            kind = model_kind(source)
        except ModelLoadError as exc:
            raise CommandError(f"{exc} --transformer-only builds over a FLUX toy model's VAE.") from exc
        if kind != "flux":
            raise CommandError(f"{source} is a {kind} model; --transformer-only builds over a FLUX toy model's VAE.")

    def build_sd(self, options) -> Path | None:
        from sampler.toy import pretrain_sd

        flux_model = options["flux_model"]
        if not (flux_model / "model_index.json").is_file():
            raise CommandError(f"{flux_model} is not a diffusers model folder: build the FLUX toy model first.")
        out = options["out"] or Path("models/toy-sd")
        recipe = pretrain_sd.SdRecipe(seed=options["seed"])
        report = pretrain_sd.build_sd(out, flux_model, recipe, minutes=options["minutes"] or 11.0)
        self.stdout.write(
            f"Saved {report.out} ({report.size_bytes / 1e6:.1f} MB) in {report.seconds / 60:.1f} min: "
            f"UNet {report.steps} steps (loss {report.loss:.4f}) over {flux_model}'s VAE and CLIP text encoder."
        )
        if report.stopped_early:
            self.stderr.write("The time cap stopped training early: this build is not reproducible.")
        return None if options["no_evaluate"] else out
