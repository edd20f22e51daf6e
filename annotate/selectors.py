"""Read queries of the annotation domain; nothing here writes."""

from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from annotate.errors import NotFound
from annotate.models import Assignment, Judgement, Pair, Round, Taste


def live_lease_ids(*, annotator: AbstractBaseUser, taste: Taste, now: datetime, limit: int) -> list[int]:
    """Ids of the leases `annotator` holds in `taste` that have not expired, oldest first."""
    return list(
        Assignment.objects.filter(
            annotator=annotator, state=Assignment.State.LEASED, lease_expires_at__gt=now, pair__taste=taste
        )
        .order_by("claimed_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def assignments_with_images(*, ids: list[int]) -> list[Assignment]:
    """The assignments `ids`, in that order, with prompt and both images loaded in one query."""
    if not ids:
        return []
    rows = Assignment.objects.filter(pk__in=ids).select_related("pair__prompt", "pair__image_a", "pair__image_b")
    by_id = {a.pk: a for a in rows}
    return [by_id[i] for i in ids]


def annotator_profile(*, annotator: AbstractBaseUser, now: datetime | None = None) -> dict:
    """The annotator's tastes with their judgement counts: today (server time zone), in the taste's
    newest open round, and in all."""
    now = now or timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = {
        row["pair__taste"]: row
        for row in Judgement.objects.filter(annotator=annotator)
        .values("pair__taste")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=start_of_day)))
    }
    tastes = list(Taste.objects.filter(annotators=annotator).order_by("slug"))
    open_rounds: dict[int, Round] = {}
    for round_ in Round.objects.filter(taste__in=tastes, state__in=Round.OPEN_STATES).order_by("taste", "-number"):
        open_rounds.setdefault(round_.taste_id, round_)
    in_round = dict(
        Judgement.objects.filter(annotator=annotator, pair__round__in=open_rounds.values())
        .values("pair__round")
        .annotate(n=Count("id"))
        .values_list("pair__round", "n")
    )
    rows = [
        {
            "slug": taste.slug,
            "name": taste.name,
            "judged_total": counts.get(taste.pk, {}).get("total", 0),
            "judged_today": counts.get(taste.pk, {}).get("today", 0),
            "round": (
                {"id": r.pk, "number": r.number, "state": r.state, "judged": in_round.get(r.pk, 0)}
                if (r := open_rounds.get(taste.pk))
                else None
            ),
        }
        for taste in tastes
    ]
    return {
        "username": annotator.get_username(),
        "is_lead": bool(annotator.is_staff),
        "tastes": rows,
        "judged_total": sum(t["judged_total"] for t in rows),
        "judged_today": sum(t["judged_today"] for t in rows),
    }


def taste_overview() -> QuerySet[Taste]:
    """Every taste with its cohort size, open pairs and judgement counts (for leads)."""
    return Taste.objects.annotate(
        annotator_count=Count("annotators", distinct=True),
        open_round_count=Count("rounds", filter=Q(rounds__state__in=Round.OPEN_STATES), distinct=True),
    ).order_by("slug")


def taste_label_counts(*, taste: Taste) -> dict:
    """Pairs, judgements and fully judged pairs of a taste."""
    pairs = Pair.objects.filter(taste=taste)
    return {
        "pairs": pairs.count(),
        "complete_pairs": pairs.filter(judged_count__gte=F("overlap")).count(),
        "judgements": Judgement.objects.filter(pair__taste=taste).count(),
        "judgements_last_24h": Judgement.objects.filter(
            pair__taste=taste, created_at__gte=timezone.now() - timedelta(days=1)
        ).count(),
    }


def taste_by_slug(*, slug: str) -> Taste:
    """The taste `slug`, or a NotFound error naming it."""
    taste = Taste.objects.filter(slug=slug).first()
    if taste is None:
        raise NotFound(f"There is no taste '{slug}'.")
    return taste
