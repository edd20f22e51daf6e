"""The Diffusion-DPO LoRA recipe: setup (data, model, cache), train (with resumable states), save."""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DiffusionPipeline
from diffusers.optimization import get_scheduler
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from sampler.model_index import model_kind
from trainer.carry_over import DECLINED_FOLDER, DRAWS, CarryOver, carry_over_test, untrained
from trainer.checkpoints import clean_stale_temps, complete_states, prune_states, write_atomically
from trainer.config import TrainConfig
from trainer.data import DatasetError, PreferencePair, load_pairs, split_heldout
from trainer.families import FAMILIES, to_pixels
from trainer.lora_files import save_lora
from trainer.objectives import dpo_loss, per_sample_error
from trainer.selection import BestAdapter

logger = logging.getLogger(__name__)
ADAPTER = "chisel"


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; no checkpoint is written."""


@dataclass
class Encoded:
    """A dataset encoded once: latents of winners and losers, text, and the guidance each pair was sampled with."""

    winners: torch.Tensor  # (N, C, h, w)
    losers: torch.Tensor  # (N, C, h, w)
    text: dict[str, torch.Tensor]  # each (N, ...)
    guidance: torch.Tensor  # (N,)

    def __len__(self) -> int:
        return self.winners.shape[0]

    def take(self, index: torch.Tensor) -> "Encoded":
        return Encoded(self.winners[index], self.losers[index], {k: v[index] for k, v in self.text.items()},
                       self.guidance[index])


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: Path
    steps: int
    pairs: int
    ties_dropped: int
    final: dict


def train(
    config: TrainConfig,
    *,
    data: Path,
    base: Path,
    out: Path,
    parents: tuple[Path, ...] = (),
    checkpoint: Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a LoRA on (base + parent chain) from the preference file `data`; write `out/checkpoint/`,
    `out/metrics.jsonl` and resumable states in `out/states/`. Resumes from the newest complete state. `checkpoint`
    puts the LoRA elsewhere (each attempt of a training job writes its own).

    `stop_after` ends the run after that step without the final checkpoint (as if killed), for tests.
    `on_step(step)` is called after every step; an exception it raises stops the run with no checkpoint (the
    training job's watchdog: the job's lease was lost).
    """
    out = Path(out)
    family_name = model_kind(base)
    if family_name not in FAMILIES:
        raise DatasetError(f"Training {family_name} models is not supported yet (flux and sd are).")
    config = config.resolved(family_name)
    pairs, ties = load_pairs(data)
    train_pairs, heldout_pairs = split_heldout(pairs, config.heldout_fraction, config.seed)

    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config), gradient_accumulation_steps=config.gradient_accumulation
    )
    pipeline, family = _load(base, family_name, config, accelerator)
    resolution = config.resolution or train_pairs[0].winner.width
    encoded = _encode(family, train_pairs, resolution, config.guidance)
    weights = pair_weights(train_pairs)
    heldout = _encode(family, heldout_pairs, resolution, config.guidance) if heldout_pairs else None
    _free_encoders(pipeline)

    denoiser = family.denoiser
    _prepare_adapters(pipeline, denoiser, parents, config)
    trainable = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, config)
    scheduler = get_scheduler(
        "constant_with_warmup" if config.lr_schedule == "constant" else config.lr_schedule, optimizer,
        num_warmup_steps=config.warmup_steps, num_training_steps=config.steps,
    )
    denoiser, optimizer = accelerator.prepare(denoiser, optimizer)

    states = out / "states"
    metrics_path = out / "metrics.jsonl"
    for folder in (out, states):  # half-written folders of killed runs
        clean_stale_temps(folder)
    start = _resume(states, accelerator.unwrap_model(denoiser), optimizer, scheduler, metrics_path)
    best = _best_to_keep(config, heldout, states, start, accelerator.unwrap_model(denoiser))
    out.mkdir(parents=True, exist_ok=True)
    last: dict = {}
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="DPO", disable=not progress)
    with metrics_path.open("a") as metrics_file:
        for step in bar:
            for micro in range(config.gradient_accumulation):
                with accelerator.accumulate(denoiser):
                    batch = encoded.take(_batch_indices(len(encoded), config, step, micro, accelerator.process_index,
                                                        weights))
                    noise = _generator(config, step, micro, accelerator.process_index)
                    terms, errors = _dpo_terms(family, denoiser, batch, config, noise, accelerator)
                    if not torch.isfinite(terms.loss):
                        raise TrainingDiverged(f"Step {step + 1}: the loss is {terms.loss.item()}; stopping with no checkpoint.")
                    accelerator.backward(terms.loss)
                    grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm) if accelerator.sync_gradients else None
                    optimizer.step()
                    scheduler.step() if accelerator.sync_gradients else None
                    optimizer.zero_grad()
            last = {
                "step": step + 1,
                "loss": terms.loss.item(),
                "dpo_loss": terms.dpo.item(),
                "implicit_accuracy": terms.implicit_accuracy.item(),
                "margin": terms.margin.item(),
                **{k: v.mean().item() for k, v in errors.items()},
                "grad_norm": float(grad_norm) if grad_norm is not None else None,
                "lr": scheduler.get_last_lr()[0],
            }
            if heldout is not None and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
                last.update(_evaluate(family, denoiser, heldout, config, accelerator))
                if best is not None:
                    adapter = get_peft_model_state_dict(accelerator.unwrap_model(denoiser), adapter_name=ADAPTER)
                    best.offer(step=step + 1, loss=last["heldout_loss"], weights=adapter)
            if accelerator.is_main_process:
                metrics_file.write(json.dumps(last) + "\n")
                metrics_file.flush()
            bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['implicit_accuracy']:.2f}")
            saving = (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps
            if saving:
                accelerator.wait_for_everyone()  # every process finished the step before its state is written
            if saving and accelerator.is_main_process:
                _save_state(states, step + 1, accelerator.unwrap_model(denoiser), optimizer, scheduler, config, best)
            if on_step is not None:
                on_step(step + 1)
            if stop_after is not None and step + 1 >= stop_after:
                return TrainResult(checkpoint or out / "checkpoint", metrics_path, step + 1, len(pairs), ties, last)

    checkpoint = Path(checkpoint) if checkpoint else out / "checkpoint"
    carry_over = _carry_over(config, family, denoiser, heldout, accelerator)
    accelerator.wait_for_everyone()  # no process is still training when the LoRA is written
    if accelerator.is_main_process:
        lora = get_peft_model_state_dict(accelerator.unwrap_model(denoiser), adapter_name=ADAPTER)
        if best is not None:
            lora = best.weights
            last.update(kept_step=best.step, kept_heldout_loss=best.loss)
        if carry_over is not None:
            last.update(carry_over=carry_over.as_dict())
            if not carry_over.carried:
                logger.info("The labels did not carry over (%s): keeping the untrained adapter.", carry_over.sentence())
                trained = lora
                write_atomically(out / DECLINED_FOLDER,
                                 lambda folder: _save_lora(pipeline, folder, trained, config, parents, base),
                                 meta={"steps": config.steps, "carry_over": carry_over.as_dict()})
                lora = untrained(trained)
        write_atomically(
            checkpoint,
            lambda folder: _save_lora(pipeline, folder, lora, config, parents, base),
            meta={"steps": config.steps, "final": last},
        )
    return TrainResult(checkpoint, metrics_path, config.steps, len(pairs), ties, last)


def evaluate_checkpoint(
    config: TrainConfig, *, data: Path, base: Path, lora: Path, parents: tuple[Path, ...] = ()
) -> dict:
    """Held-out loss and implicit accuracy of a saved LoRA, loaded afresh the way the sampler loads it.
    Equal to the training run's last held-out figures when the checkpoint reproduces the trained model."""
    family_name = model_kind(base)
    config = config.resolved(family_name)
    pairs, _ = load_pairs(data)
    _, heldout_pairs = split_heldout(pairs, config.heldout_fraction, config.seed)
    if not heldout_pairs:
        raise DatasetError("The dataset is too small to hold pairs out (10 or more are needed).")
    accelerator = Accelerator(mixed_precision=_mixed_precision(config))
    pipeline, family = _load(base, family_name, config, accelerator)
    heldout = _encode(family, heldout_pairs, config.resolution or heldout_pairs[0].winner.width, config.guidance)
    _free_encoders(pipeline)
    _prepare_adapters(pipeline, family.denoiser, parents, config, lora=lora)
    return _evaluate(family, family.denoiser, heldout, config, accelerator)


def _carry_over(config: TrainConfig, family, denoiser, heldout: Encoded | None, accelerator) -> CarryOver | None:
    """The carry-over test of the last step's adapter, when the config asks for one and there are pairs to test."""
    if config.carry_over_alpha is None:
        return None
    if heldout is None or 0.5 ** len(heldout) > config.carry_over_alpha:
        logger.warning("The carry-over test needs more held-out pairs than this dataset has (even all of them ranked as "
                       "labelled would not reach α %g): keeping the trained adapter.", config.carry_over_alpha)
        return None
    denoiser.eval()
    with torch.no_grad():
        margins = torch.stack([
            _dpo_terms(family, denoiser, heldout, config, torch.Generator().manual_seed(config.seed + 2_000 + draw),
                       accelerator)[0].inside.float().cpu()
            for draw in range(DRAWS)
        ], dim=1)  # (pairs, draws)
    denoiser.train()
    return carry_over_test(margins=margins, alpha=config.carry_over_alpha)


def _load(base: Path, family_name: str, config: TrainConfig, accelerator):
    dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32
    pipeline = DiffusionPipeline.from_pretrained(base, dtype=dtype).to(accelerator.device)
    pipeline.set_progress_bar_config(disable=True)
    family = FAMILIES[family_name](pipeline, max_sequence_length=config.max_sequence_length,
                                   logit_mean=config.logit_mean, logit_std=config.logit_std,
                                   flow_errors=config.flow_errors)
    return pipeline, family


def _mixed_precision(config: TrainConfig) -> str:
    if config.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return config.mixed_precision


def _encode(family, pairs: list[PreferencePair], resolution: int, default_guidance: float, chunk: int = 16) -> Encoded:
    """Latents and text embeddings of every pair, computed once (then the encoders can go)."""
    winners, losers, texts = [], [], []
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        winners.append(family.encode_images(to_pixels([p.winner for p in part], resolution)))
        losers.append(family.encode_images(to_pixels([p.loser for p in part], resolution)))
        texts.append(family.encode_text([p.caption for p in part]))
    guidance = torch.tensor([p.guidance if p.guidance is not None else default_guidance for p in pairs])
    return Encoded(torch.cat(winners), torch.cat(losers), {k: torch.cat([t[k] for t in texts]) for k in texts[0]},
                   guidance.float())


def _free_encoders(pipeline) -> None:
    for name in ("vae", "text_encoder", "text_encoder_2"):
        if getattr(pipeline, name, None) is not None:
            setattr(pipeline, name, None)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _prepare_adapters(pipeline, denoiser, parents: tuple[Path, ...], config: TrainConfig, lora: Path | None = None) -> None:
    """reference=parent: fuse the parent chain into the weights, so 'adapter off' is round N−1's model.
    reference=base: keep the chain as frozen adapters, so 'adapters off' is the base model.
    Either way the new LoRA is the only trainable part, and no second copy of the weights exists.
    With `lora`, that saved LoRA is loaded as the new adapter instead of a fresh one (evaluation)."""
    names = [f"parent_{i}" for i in range(len(parents))]
    for name, path in zip(names, parents):
        pipeline.load_lora_weights(str(path), adapter_name=name)
    if names and config.reference == "parent":
        pipeline.fuse_lora(adapter_names=names, lora_scale=1.0)
        pipeline.unload_lora_weights()
        names = []
    denoiser.requires_grad_(False)
    torch.manual_seed(config.seed)  # the new LoRA's initial weights depend on the seed alone
    if lora is not None:
        pipeline.load_lora_weights(str(lora), adapter_name=ADAPTER)
    else:
        denoiser.add_adapter(_lora_config(config), adapter_name=ADAPTER)
    denoiser.set_adapters([*names, ADAPTER], weights=[1.0] * (len(names) + 1))
    for name, param in denoiser.named_parameters():
        param.requires_grad = f".{ADAPTER}." in name
    if config.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    denoiser.train()


def _optimizer(params, config: TrainConfig):
    if config.adam_8bit:
        try:
            import bitsandbytes
        except ImportError as exc:
            raise RuntimeError("adam_8bit needs bitsandbytes (pip install bitsandbytes) on a CUDA machine.") from exc
        return bitsandbytes.optim.AdamW8bit(params, lr=config.learning_rate)
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-4)


def _generator(config: TrainConfig, step: int, micro: int, process: int = 0) -> torch.Generator:
    """Noise and timesteps of a step depend only on (seed, step, process): a resumed run draws what an unbroken one
    would, and each process of a multi-GPU run draws its own (the same noise on every GPU would waste all but one)."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step * 131 + micro + process * 1_000_000_007)


def pair_weights(pairs: list[PreferencePair]) -> torch.Tensor | None:
    """The pairs' weights (the dataset's `weight` column: annotator trust), or None when all are equal."""
    weights = torch.tensor([p.weight for p in pairs], dtype=torch.float64)
    return None if bool((weights == weights[0]).all()) else weights


def _batch_indices(size: int, config: TrainConfig, step: int, micro: int, process: int,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """A batch of pair indices drawn with replacement: uniformly, or in proportion to the pairs' weights, so a pair
    of weight w enters the loss w times as often as one of weight 1 in expectation (a weighted mean of the loss)."""
    generator = torch.Generator().manual_seed(config.seed * 7_919 + step * 257 + micro * 17 + process * 100_003)
    if weights is not None:
        return torch.multinomial(weights, min(config.batch_size, size), replacement=True, generator=generator)
    return torch.randint(0, size, (min(config.batch_size, size),), generator=generator)


def _dpo_terms(family, denoiser, batch: Encoded, config: TrainConfig, generator: torch.Generator, accelerator):
    """One DPO forward: winners and losers share noise and timestep; the reference is the same network with
    the trained adapter switched off, under no_grad."""
    device = accelerator.device
    x0 = torch.cat([batch.winners, batch.losers]).to(device)  # (2B, C, h, w)
    noise = torch.randn(batch.winners.shape, generator=generator).repeat(2, 1, 1, 1).to(device)  # (2B, C, h, w)
    t = family.sample_t(batch.winners.shape[0], generator).repeat(2).to(device)  # (2B,) shared by w and l
    noisy, target = family.inputs(x0, noise, t)
    text = {k: torch.cat([v, v]).to(device) for k, v in batch.text.items()}
    guidance = torch.cat([batch.guidance, batch.guidance]).to(device)
    with accelerator.autocast():
        policy = family.predict(noisy, t, text, guidance)
        model = accelerator.unwrap_model(denoiser)
        model.disable_adapters()
        try:
            with torch.no_grad():
                reference = family.predict(noisy, t, text, guidance)
        finally:
            model.enable_adapters()
    policy_err, ref_err = per_sample_error(policy, target), per_sample_error(reference, target)  # (2B,)
    weights = family.error_weights(t)
    if weights is not None:
        policy_err, ref_err = policy_err * weights, ref_err * weights
    half = batch.winners.shape[0]
    errors = {"policy_err_w": policy_err[:half], "policy_err_l": policy_err[half:],
              "ref_err_w": ref_err[:half], "ref_err_l": ref_err[half:]}
    terms = dpo_loss(errors["policy_err_w"], errors["policy_err_l"], errors["ref_err_w"], errors["ref_err_l"],
                     config.beta, config.sft_weight, config.winner_floor, config.anchor_weight)
    return terms, {k: v.detach() for k, v in errors.items()}


@torch.no_grad()
def _evaluate(family, denoiser, heldout: Encoded, config: TrainConfig, accelerator) -> dict:
    """Implicit accuracy and loss on pairs never trained on, with a fixed noise draw."""
    denoiser.eval()
    terms, _ = _dpo_terms(family, denoiser, heldout, config, torch.Generator().manual_seed(config.seed + 999),
                          accelerator)
    denoiser.train()
    return {"heldout_loss": terms.dpo.item(), "heldout_implicit_accuracy": terms.implicit_accuracy.item()}


def _save_state(
    states: Path, step: int, denoiser, optimizer, scheduler, config: TrainConfig, best: BestAdapter | None
) -> None:
    def write(folder: Path) -> None:
        if best is not None:
            best.save(folder)
        save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(denoiser, adapter_name=ADAPTER).items()},
                  folder / "adapter.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, folder / "optimizer.pt")
        (folder / "state.json").write_text(json.dumps({"step": step, "config": config.as_dict()}))

    write_atomically(states / f"step-{step:06d}", write, meta={"step": step})
    prune_states(states, config.keep_states)


def _best_to_keep(
    config: TrainConfig, heldout: Encoded | None, states: Path, start: int, denoiser
) -> BestAdapter | None:
    """With `keep: best`, the best adapter so far: the resumed state's, or the untrained one (None: keep the last)."""
    if config.keep != "best":
        return None
    if heldout is None:
        logger.warning("keep: best needs held-out pairs and this dataset has too few: keeping the last adapter.")
        return None
    weights = get_peft_model_state_dict(denoiser, adapter_name=ADAPTER)
    if not start:
        return BestAdapter.untrained(weights)
    saved = BestAdapter.load(complete_states(states)[-1][1])
    # A state written while keeping the last adapter: what it holds is the only candidate so far.
    return saved or BestAdapter(step=start, loss=float("inf"), weights=weights)


def _resume(states: Path, denoiser, optimizer, scheduler, metrics_path: Path) -> int:
    """Load the newest complete state, if any; returns the step to go on from (0 for a fresh run)."""
    complete = complete_states(states)
    if not complete:
        metrics_path.unlink(missing_ok=True)
        return 0
    step, folder = complete[-1]
    set_peft_model_state_dict(denoiser, load_file(folder / "adapter.safetensors"), adapter_name=ADAPTER)
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if metrics_path.exists():  # keep the lines of the steps that the state covers
        kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        metrics_path.write_text("".join(line + "\n" for line in kept))
    logger.info("Resuming from %s (step %d)", folder, step)
    return step


def _lora_config(config: TrainConfig) -> LoraConfig:
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, target_modules=config.target_modules,
                      init_lora_weights="gaussian")


def _save_lora(pipeline, folder: Path, lora: dict, config: TrainConfig, parents, base) -> None:
    """The LoRA with its rank and alpha in the file's metadata and adapter_config.json (trainer/lora_files.py), so
    diffusers and the sampler load it at the trained strength; training.json says how it was made."""
    save_lora(type(pipeline), folder, lora, _lora_config(config))
    (folder / "training.json").write_text(json.dumps(
        {"config": config.as_dict(), "base": str(base), "parents": [str(p) for p in parents]}, indent=2
    ))
