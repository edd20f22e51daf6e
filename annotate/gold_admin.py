"""Admin actions on pairs: a lead marks pairs gold with an expected answer, or makes them training pairs again."""

from django.contrib import admin, messages

from annotate import gold
from annotate.errors import DomainError
from annotate.models import Round


def _mark(choice: str):
    @admin.action(description=f"Make gold, expecting {'a tie' if choice == 'tie' else 'image ' + choice.upper()}")
    def action(modeladmin, request, queryset):
        done = 0
        for pair_id in queryset.values_list("pk", flat=True):
            try:
                gold.pair_mark_gold(pair_id=pair_id, choice=choice)
                done += 1
            except DomainError as error:
                messages.warning(request, str(error))
        messages.success(request, f"{done} pair(s) are gold, expecting {choice}.")
        closed = queryset.filter(kind="gold").exclude(round__state__in=Round.OPEN_STATES).count()
        if closed:
            messages.warning(request, f"{closed} of them are in rounds that are not open: gold pairs are served only "
                                      "while their round hands out pairs.")

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
