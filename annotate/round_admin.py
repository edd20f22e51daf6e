"""The lead's cockpit in the admin: launch a round, watch its progress live, steer it with actions."""

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
from annotate.launch import launch_warnings, round_launch
from annotate.launch_form import LaunchRoundForm
from annotate.models import Round, Taste

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
        launch = reverse("admin:annotate_round_launch")  # ?taste=… chooses the taste there too
        return redirect(f"{launch}?{request.GET.urlencode()}" if request.GET else launch)

    def launch_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        slug = request.POST.get("taste") or request.GET.get("taste")
        tastes = Taste.objects.select_related("current_checkpoint__base_model")
        taste = tastes.filter(slug=slug).first() if slug else (tastes.get() if tastes.count() == 1 else None)
        form = LaunchRoundForm(request.POST or None, request.FILES or None, taste=taste,
                               initial={"taste": taste.slug if taste else None})
        if request.method == "POST" and form.is_valid():
            try:
                round_ = round_launch(taste=form.cleaned_data["taste"], settings=form.settings())
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Launched round {round_.number} of {round_.taste.slug}.")
                for warning in launch_warnings(taste=round_.taste, settings=form.settings()):
                    messages.warning(request, warning)
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
