"""Admin actions on pairs: a lead marks pairs gold with an expected answer, or makes them training pairs again,
from the pair list or from a judged pair's own page."""

from collections import Counter

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse

from annotate import gold
from annotate.access import user_is_lead
from annotate.errors import DomainError
from annotate.models import Judgement, Pair

EXPECTING = {"a": "image A", "b": "image B", "tie": "a tie"}
ANSWER_LABELS = [(Judgement.Choice.A, "A"), (Judgement.Choice.B, "B"), (Judgement.Choice.TIE, "tie"),
                 (Judgement.Choice.BOTH_BAD, "both bad")]


def _mark(choice: str):
    @admin.action(description=f"Make gold, expecting {EXPECTING[choice]}")
    def action(modeladmin, request, queryset):
        done = 0
        for pair_id in queryset.values_list("pk", flat=True):
            try:
                gold.pair_mark_gold(pair_id=pair_id, choice=choice)
                done += 1
            except DomainError as error:
                messages.warning(request, str(error))
        messages.success(request, f"{done} pair(s) are gold, expecting {choice}.")

    action.__name__ = f"mark_gold_{choice}"
    return action


@admin.action(description="Make training pairs again (no longer gold)")
def unmark_gold(modeladmin, request, queryset):
    for pair_id in queryset.filter(kind="gold").values_list("pk", flat=True):
        gold.pair_unmark_gold(pair_id=pair_id)
    messages.success(request, "The chosen gold pairs are training pairs again.")


class PairGoldActions:
    """Gold actions for PairAdmin (the pair list stays read-only otherwise)."""

    actions = [_mark("a"), _mark("b"), _mark("tie"), unmark_gold]


class PairGoldPage:
    """On a training or gold pair's page: the answers it has so far and buttons that make it gold, expecting A, B or
    a tie (or a training pair again), POSTing to `<pair id>/gold/`. Leads only, as the API's gold endpoint."""

    admin_site: admin.AdminSite
    change_form_template = "admin/annotate/pair/change_form.html"

    def get_urls(self):
        return [
            path("<int:pair_id>/gold/", self.admin_site.admin_view(self.gold_set), name="annotate_pair_gold"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        pair = Pair.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        extra = dict(extra_context or {})
        if pair is not None and pair.kind in (Pair.Kind.TRAIN, Pair.Kind.GOLD) and user_is_lead(request.user):
            answers = Counter(pair.judgements.values_list("choice", flat=True))
            extra["gold"] = {
                "url": reverse("admin:annotate_pair_gold", args=[pair.pk]), "pair": pair,
                "answers": [(label, answers.get(choice, 0)) for choice, label in ANSWER_LABELS],
            }
        return super().change_view(request, object_id, form_url, extra)

    def gold_set(self, request: HttpRequest, pair_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not user_is_lead(request.user):
            raise PermissionDenied
        choice = request.POST.get("choice", "")
        try:
            if choice == "none":
                gold.pair_unmark_gold(pair_id=pair_id)
                messages.success(request, f"Pair {pair_id} is a training pair again.")
            else:
                gold.pair_mark_gold(pair_id=pair_id, choice=choice)
                messages.success(request, f"Pair {pair_id} is gold, expecting {EXPECTING[choice]}: every annotator of "
                                          "the taste who has not judged it may be served it once, blind.")
        except DomainError as error:
            messages.error(request, error.message)
        return redirect("admin:annotate_pair_change", pair_id)
