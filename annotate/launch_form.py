"""The admin's launch form: every setting of a round, bounded, pre-filled from the taste's last round and base model."""

from django import forms

from annotate.guard_rails import registry
from annotate.launch import LaunchSettings
from annotate.launch_settings import (
    FAMILY_NAMES, LIMITS, QUOTAS, base_sampling, base_training, model_defaults, usual_range,
)
from annotate.models import Round, Taste

MAX_PROMPT_FILE = 2 * 1024 * 1024
RAIL_PREFIX = "rail__"
# form field → (section, key) of the round's sampling_config / training_config
MODEL_FIELDS = {
    "steps": ("sampling", "steps"), "guidance": ("sampling", "guidance"), "size": ("sampling", "width"),
    "beta": ("training", "beta"), "learning_rate": ("training", "learning_rate"), "train_steps": ("training", "steps"),
    "rank": ("training", "rank"), "reference": ("training", "reference"),
    "carry_over_alpha": ("training", "carry_over_alpha"),
}


def _bounded(kind, key: str, **kwargs):
    limit = LIMITS[key]
    return kind(min_value=limit.low, max_value=limit.high, **kwargs)


class LaunchRoundForm(forms.Form):
    """Every setting of a round; a blank model field falls back to the base model's default, shown beside it."""

    taste = forms.ModelChoiceField(queryset=Taste.objects.order_by("slug"), to_field_name="slug",
                                   help_text="Changing it reloads the form with that taste's settings.")
    prompt_tags = forms.CharField(required=False, help_text="Stored prompts carrying all these comma-separated tags.")
    prompt_file = forms.FileField(required=False, help_text="A UTF-8 text file, one prompt per line.")
    prompt_text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                                  help_text="One prompt per line.")
    heldout_share = _bounded(forms.FloatField, "heldout_share", initial=QUOTAS["heldout_share"],
                             help_text="Share of the prompts kept out of training, for evaluation.")
    pair_quota = _bounded(forms.IntegerField, "pair_quota", initial=QUOTAS["pair_quota"])
    label_quota = _bounded(forms.IntegerField, "label_quota", initial=QUOTAS["label_quota"],
                           help_text="Train labels collected before training.")
    overlap = _bounded(forms.IntegerField, "overlap", initial=QUOTAS["overlap"], help_text="Annotators per pair.")
    eval_pair_quota = _bounded(forms.IntegerField, "eval_pair_quota", initial=QUOTAS["eval_pair_quota"],
                               help_text="Child-vs-parent pairs.")
    steps = _bounded(forms.IntegerField, "sampling.steps", required=False, label="Sampling steps")
    guidance = _bounded(forms.FloatField, "sampling.guidance", required=False)
    size = _bounded(forms.IntegerField, "sampling.width", required=False, help_text="Width and height in pixels.")
    beta = _bounded(forms.FloatField, "training.beta", required=False, label="DPO β")
    learning_rate = _bounded(forms.FloatField, "training.learning_rate", required=False)
    train_steps = _bounded(forms.IntegerField, "training.steps", required=False)
    rank = _bounded(forms.IntegerField, "training.rank", required=False, label="LoRA rank")
    reference = forms.ChoiceField(
        choices=[("", "—"), ("base", "base model"), ("parent", "parent (the model of the previous round)")],
        required=False, help_text="What the DPO objective measures the policy against.",
    )
    carry_over_alpha = _bounded(
        forms.FloatField, "training.carry_over_alpha", required=False, label="Carry-over test's level α",
        help_text="Keep the trained adapter only when it leans towards the held-out pairs' labelled winners more "
                  "than a coin would, by a one-sided signed-rank test at this level; else the child is its parent. "
                  "0: no test.",
    )
    promotion_threshold = _bounded(forms.FloatField, "promotion_threshold", initial=QUOTAS["promotion_threshold"],
                                   help_text="Promote when the win rate's 95% lower bound clears this.")
    auto_advance = forms.BooleanField(initial=True, required=False,
                                      help_text="Train and decide by itself once the quotas are met.")
    trust_mode = forms.ChoiceField(
        choices=[("off", "off"), ("exclude", "leave out annotators below the threshold"),
                 ("weight", "weight each judgement by its annotator's trust")],
        initial="off", required=False, help_text="Annotator trust (gold accuracy × agreement) in training.",
    )
    trust_threshold = forms.FloatField(initial=0.4, min_value=0, max_value=1, required=False)

    def __init__(self, *args, taste: Taste | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["taste"].widget.attrs["data-reload-with"] = "taste"  # annotate/launch_form.js (no inline script: CSP)
        self.fields.update(rail_fields())
        checkpoint = taste.current_checkpoint if taste is not None else None
        if checkpoint is None:
            hint = "choose a taste to see it" if taste is None else "this taste has no model yet"
            for name in MODEL_FIELDS:
                text = f"Blank: the base model's default ({hint})."
                self.fields[name].help_text = _join(self.fields[name].help_text, text)
            return
        for name, text in fallbacks(checkpoint.base_model).items():
            self.fields[name].help_text = _join(self.fields[name].help_text, text)
        if not self.is_bound:
            self.initial = {**self.initial, **launch_initial(taste)}

    def clean_prompt_file(self):
        upload = self.cleaned_data.get("prompt_file")
        if upload is None:
            return []
        if upload.size > MAX_PROMPT_FILE:
            raise forms.ValidationError("The prompt file is larger than 2 MB.")
        try:
            return upload.read().decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise forms.ValidationError("The prompt file is not UTF-8 text.") from exc

    def setting_fields(self) -> list:
        return [bound for bound in self if not bound.name.startswith(RAIL_PREFIX)]

    def guard_rail_fields(self) -> list:
        return [bound for bound in self if bound.name.startswith(RAIL_PREFIX)]

    def settings(self) -> LaunchSettings:
        data = self.cleaned_data
        optional = lambda pairs: {key: data[f] for key, f in pairs if data.get(f) not in (None, "")}  # noqa: E731
        sampling = optional([("steps", "steps"), ("guidance", "guidance"), ("width", "size"), ("height", "size")])
        training = optional([("beta", "beta"), ("learning_rate", "learning_rate"), ("steps", "train_steps"),
                             ("rank", "rank"), ("reference", "reference"),
                             ("carry_over_alpha", "carry_over_alpha")])
        rails = {name: {key: data[field_name(name, key)] for key in rail.limits
                        if data.get(field_name(name, key)) is not None}
                 for name, rail in registry().items() if data.get(field_name(name))}
        return LaunchSettings(
            tags=[t.strip() for t in data["prompt_tags"].split(",") if t.strip()],
            prompt_texts=data["prompt_file"] + data["prompt_text"].splitlines(), heldout_share=data["heldout_share"],
            pair_quota=data["pair_quota"], label_quota=data["label_quota"], overlap=data["overlap"],
            eval_pair_quota=data["eval_pair_quota"], sampling=sampling, training=training,
            promotion_threshold=data["promotion_threshold"], guard_rails=rails, auto_advance=data["auto_advance"],
            trust_mode=data.get("trust_mode") or "off",
            trust_threshold=0.4 if data.get("trust_threshold") is None else data["trust_threshold"],
        )


def field_name(rail: str, limit: str = "") -> str:
    """The form field that runs a guard-rail (no `limit`) or sets one of its limits."""
    return f"{RAIL_PREFIX}{rail}" + (f"__{limit}" if limit else "")


def rail_fields() -> dict[str, forms.Field]:
    """A tick box per registered guard-rail (ticked when it runs by default) and a field per limit; a blank limit
    takes the rail's default."""
    fields = {}
    for name, rail in registry().items():
        fields[field_name(name)] = forms.BooleanField(
            initial=rail.on, required=False, label=f"Guard-rail {name}",
            help_text=rail.summary + (" Its figures are shown in the decision even when it is off."
                                      if rail.always_shown else ""),
        )
        for key, limit in rail.limits.items():
            fallback = "no bound" if limit.default is None else f"{limit.default:g} (the default)"
            fields[field_name(name, key)] = forms.FloatField(
                required=False, min_value=limit.low, max_value=limit.high, initial=limit.default,
                label=f"{name}: {limit.label}", help_text=f"Blank: {fallback}.",
            )
    return fields


def fallbacks(base) -> dict[str, str]:
    """Form field → what a blank falls back to, where that value comes from, and the usual range."""
    own = model_defaults(base).training
    values = {"sampling": base_sampling(base), "training": base_training(base)}
    family = FAMILY_NAMES.get(base.kind, base.kind)
    texts = {}
    for name, (section, key) in MODEL_FIELDS.items():
        value = values[section].get(key)
        if section == "sampling":
            source = f"{base.name}'s default"
        elif key in own:
            source = f"{base.name}'s own default, from its chisel.json"
        elif key in ("beta", "learning_rate"):
            source = f"the {family} family's default"
        else:
            source = "the trainer's default"
        text = f"Blank: {_show(value)} ({source})."
        span = usual_range(f"{section}.{key}", base.kind, value)
        if span is not None:
            text += f" Usually {_show(span[0])}–{_show(span[1])} for this {family} model."
        texts[name] = text
    return texts


def launch_initial(taste: Taste) -> dict:
    """Starting values of the form: the taste's last launched round, else its base model's defaults and QUOTAS."""
    base = taste.current_checkpoint.base_model
    sampling, training = base_sampling(base), base_training(base)
    initial = {"taste": taste.slug, **QUOTAS}
    last = taste.rounds.exclude(parent_checkpoint=None).order_by("-number").first()
    if last is not None:
        sampling, training = {**sampling, **last.sampling_config}, {**training, **last.training_config}
        initial.update(pair_quota=last.pair_quota, label_quota=last.label_quota, overlap=last.overlap,
                       eval_pair_quota=last.eval_pair_quota, promotion_threshold=last.promotion_threshold,
                       auto_advance=last.auto_advance, heldout_share=_heldout_share(last))
        for name, limits in (last.guard_rails or {}).items():  # rails on by default stay ticked (rail_fields)
            initial[field_name(name)] = True
            initial.update({field_name(name, key): value for key, value in (limits or {}).items()})
    for name, (section, key) in MODEL_FIELDS.items():
        initial[name] = (sampling if section == "sampling" else training).get(key)
    if initial["carry_over_alpha"] is None:  # no test: a blank would take the model's own default instead
        initial["carry_over_alpha"] = 0
    return initial


def _heldout_share(round_: Round) -> float:
    train, held = (len(round_.sampling_config.get(k) or []) for k in ("prompt_ids", "eval_prompt_ids"))
    return round(held / (train + held), 2) if train and held else QUOTAS["heldout_share"]


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else "none" if value is None else str(value)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
