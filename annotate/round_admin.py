"""The lead's cockpit in the admin: launch a round, watch its progress live, steer it with actions."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from annotate import cockpit, services
from annotate import loop, rounds
from annotate.errors import DomainError
from annotate.launch import LaunchSettings, round_launch
from annotate.models import Round, Taste

MAX_PROMPT_FILE = 2 * 1024 * 1024


class LaunchRoundForm(forms.Form):
    """Every setting of a round; empty optional fields fall back to the base model's and the trainer's defaults."""

    taste = forms.ModelChoiceField(queryset=Taste.objects.order_by("slug"), to_field_name="slug")
    prompt_tags = forms.CharField(required=False, help_text="Stored prompts carrying all these comma-separated tags.")
    prompt_file = forms.FileField(required=False, help_text="A UTF-8 text file, one prompt per line.")
    prompt_text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="One prompt per line.")
    heldout_share = forms.FloatField(initial=0.2, min_value=0.01, max_value=0.9,
                                     help_text="Share of the prompts kept out of training, for evaluation.")
    pair_quota = forms.IntegerField(initial=200, min_value=1)
    label_quota = forms.IntegerField(initial=400, min_value=1, help_text="Train labels collected before training.")
    overlap = forms.IntegerField(initial=2, min_value=1, max_value=20, help_text="Annotators per pair.")
    eval_pair_quota = forms.IntegerField(initial=48, min_value=1, help_text="Child-vs-parent pairs.")
    steps = forms.IntegerField(required=False, min_value=1, label="Sampling steps")
    guidance = forms.FloatField(required=False, min_value=0)
    size = forms.IntegerField(required=False, min_value=64, max_value=4096, help_text="Width and height in pixels.")
    beta = forms.FloatField(required=False, min_value=1, label="DPO β")
    learning_rate = forms.FloatField(required=False, min_value=0)
    train_steps = forms.IntegerField(required=False, min_value=1)
    rank = forms.IntegerField(required=False, min_value=1, max_value=256, label="LoRA rank")
    reference = forms.ChoiceField(choices=[("base", "base model"), ("parent", "parent (the model of the previous round)")],
                                  initial="base", help_text="What the DPO objective measures the policy against.")
    promotion_threshold = forms.FloatField(initial=0.5, min_value=0, max_value=1,
                                           help_text="Promote when the win rate's 95% lower bound clears this.")
    adherence_max_drop = forms.FloatField(initial=0.05, min_value=0, max_value=1, required=False,
                                          help_text="Guard-rail: caption adherence may drop at most this much (toy world).")
    auto_advance = forms.BooleanField(initial=True, required=False,
                                      help_text="Train and decide by itself once the quotas are met.")

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

    def settings(self) -> LaunchSettings:
        data = self.cleaned_data
        optional = lambda pairs: {key: data[field] for key, field in pairs if data.get(field) is not None}  # noqa: E731
        sampling = optional([("steps", "steps"), ("guidance", "guidance"), ("width", "size"), ("height", "size")])
        training = {**optional([("beta", "beta"), ("learning_rate", "learning_rate"), ("steps", "train_steps"),
                                ("rank", "rank")]), "reference": data["reference"]}
        rails = {} if data.get("adherence_max_drop") is None else {"adherence": {"max_drop": data["adherence_max_drop"]}}
        return LaunchSettings(
            tags=[t.strip() for t in data["prompt_tags"].split(",") if t.strip()],
            prompt_texts=data["prompt_file"] + data["prompt_text"].splitlines(), heldout_share=data["heldout_share"],
            pair_quota=data["pair_quota"], label_quota=data["label_quota"], overlap=data["overlap"],
            eval_pair_quota=data["eval_pair_quota"], sampling=sampling, training=training,
            promotion_threshold=data["promotion_threshold"], guard_rails=rails, auto_advance=data["auto_advance"],
        )


# name → (label, the service that performs it, states in which the button shows)
ACTIONS = {
    "pause": ("Pause", lambda r, user: loop.round_pause(round_id=r), rounds.ACTIVE),
    "resume": ("Resume", lambda r, user: loop.round_resume(round_id=r), rounds.ACTIVE),
    "release": ("Release stale leases", lambda r, user: _release_stale(r), Round.OPEN_STATES),
    "advance": ("Advance now: train on the labels in", lambda r, user: loop.round_advance_now(round_id=r),
                (Round.State.ANNOTATING,)),
    "decide": ("Decide by the rule", lambda r, user: loop.round_decide(round_id=r, by=user) is not None,
               (Round.State.EVALUATING,)),
    "promote": ("Promote the candidate", lambda r, user: loop.round_decide(round_id=r, promote=True, by=user) is not None,
                (Round.State.EVALUATING,)),
    "reject": ("Reject the candidate", lambda r, user: loop.round_decide(round_id=r, promote=False, by=user) is not None,
               (Round.State.EVALUATING,)),
    "retry": ("Retry the failed step", lambda r, user: loop.round_retry_step(round_id=r), (Round.State.FAILED,)),
    "cancel": ("Cancel", lambda r, user: rounds.round_cancel(round_id=r, reason=f"cancelled by {user}"),
               (*rounds.ACTIVE, Round.State.FAILED)),
}


def actions_for(round_: Round) -> list[tuple[str, str]]:
    """(name, label) of the actions that make sense in the round's state."""
    shown = []
    for name, (label, _, states) in ACTIONS.items():
        if round_.state not in states:
            continue
        if (name == "pause" and round_.paused) or (name == "resume" and not round_.paused):
            continue
        shown.append((name, label))
    return shown


def _release_stale(round_id: int) -> str:
    """An action may answer True (done), False (the round's state does not allow it now) or what it did."""
    released = services.leases_release(round_id=round_id, idle=services.STALE_LEASE_IDLE)
    minutes = int(services.STALE_LEASE_IDLE.total_seconds() // 60)
    if not released:
        return f"no lease has been idle for {minutes} minutes; nothing released."
    return f"released {released} lease{'s' if released > 1 else ''} idle for {minutes} minutes or more."


class RoundCockpit:
    """Views added to RoundAdmin: the launch form, the progress feed and the actions."""

    admin_site: admin.AdminSite

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("launch/", wrap(self.launch_view), name="annotate_round_launch"),
            path("<int:round_id>/progress/", wrap(self.progress_view), name="annotate_round_progress"),
            path("<int:round_id>/act/<str:action>/", wrap(require_POST(self.act_view)), name="annotate_round_act"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("admin:annotate_round_launch")

    def launch_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = LaunchRoundForm(request.POST or None, request.FILES or None,
                               initial={"taste": request.GET.get("taste")})
        if request.method == "POST" and form.is_valid():
            try:
                round_ = round_launch(taste=form.cleaned_data["taste"], settings=form.settings())
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Launched round {round_.number} of {round_.taste.slug}.")
                return redirect("admin:annotate_round_change", round_.pk)
        context = {**self.admin_site.each_context(request), "title": "Launch a round", "form": form,
                   "opts": self.model._meta}
        return TemplateResponse(request, "admin/annotate/round/launch.html", context)

    def progress_view(self, request: HttpRequest, round_id: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        round_ = get_object_or_404(Round, pk=round_id)
        waits = cockpit.round_waits(round_id=round_id)
        return JsonResponse({**loop.round_progress(round_id=round_id),
                             "actions": [name for name, _ in actions_for(round_)],
                             "waits_html": render_to_string("admin/annotate/round/waits.html", {"waits": waits})})

    def act_view(self, request: HttpRequest, round_id: int, action: str) -> HttpResponse:
        if not self.has_change_permission(request) or action not in ACTIONS:
            raise PermissionDenied
        get_object_or_404(Round, pk=round_id)
        label, perform, _ = ACTIONS[action]
        try:
            done = perform(round_id, request.user.get_username())
        except DomainError as exc:
            messages.error(request, f"{label}: {exc}")
        else:
            if isinstance(done, str):
                messages.success(request, f"{label}: {done}")
            elif done:
                messages.success(request, f"{label}: done.")
            else:
                messages.warning(request, f"{label}: the round's state does not allow it now (someone may have moved it).")
        return redirect("admin:annotate_round_change", round_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The round's page is a read-only cockpit: progress, what it waits for, settings; changes go through actions."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        round_ = get_object_or_404(Round.objects.select_related("taste"), pk=object_id)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": round_,
            "title": f"Round {round_.number} of {round_.taste.slug}", "cockpit_actions": actions_for(round_),
            "can_act": self.has_change_permission(request, round_),
            "progress_url": reverse("admin:annotate_round_progress", args=[round_.pk]),
            "progress": loop.round_progress(round_id=round_.pk), "waits": cockpit.round_waits(round_id=round_.pk),
            "settings_sections": cockpit.round_settings(round_),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/annotate/round/cockpit.html", context)
