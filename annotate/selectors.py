"""Read queries of the annotation domain; nothing here writes."""

from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, Max, Model, Q, QuerySet
from django.utils import timezone

from annotate.errors import NotFound
from annotate.models import Assignment, Image, Judgement, Pair, Prompt, Round, Taste


# On PostgreSQL the two reads of every claim are plain SQL: building them with the ORM cost more CPU than
# PostgreSQL spends on them. SQLite (the embedded demo) keeps the ORM.
_LIVE_LEASES = f"""
    SELECT a.id FROM {Assignment._meta.db_table} a JOIN {Pair._meta.db_table} p ON p.id = a.pair_id
    WHERE a.annotator_id = %(annotator)s AND a.state = 'leased' AND a.lease_expires_at > %(now)s
      AND p.taste_id = %(taste)s
    ORDER BY a.claimed_at, a.id LIMIT %(limit)s
"""


def live_lease_ids(*, annotator: AbstractBaseUser, taste: Taste, now: datetime, limit: int) -> list[int]:
    """Ids of the leases `annotator` holds in `taste` that have not expired, oldest first."""
    if connection.vendor != "postgresql":
        return list(
            Assignment.objects.filter(
                annotator=annotator, state=Assignment.State.LEASED, lease_expires_at__gt=now, pair__taste=taste
            )
            .order_by("claimed_at", "id")
            .values_list("id", flat=True)[:limit]
        )
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_LEASES, {"annotator": annotator.pk, "now": now, "taste": taste.pk, "limit": limit})
        return [assignment_id for (assignment_id,) in cursor.fetchall()]


def annotators_last_active(*, taste_id: int, annotator_ids) -> dict[int, datetime]:
    """When each annotator last did something in the taste: claimed, judged, skipped or amended a pair."""
    rows = (
        Assignment.objects.filter(pair__taste_id=taste_id, annotator_id__in=list(annotator_ids))
        .values("annotator_id")
        .annotate(
            claimed=Max("claimed_at"), amended=Max("judgement__amended_at"),
            closed=Max("closed_at", filter=Q(state__in=[Assignment.State.JUDGED, Assignment.State.SKIPPED])),
        )
    )
    return {row["annotator_id"]: max(t for t in (row["claimed"], row["closed"], row["amended"]) if t) for row in rows}


def _column(model: type[Model], attname: str) -> str:
    return f'"{model._meta.get_field(attname).column}"'


_ASSIGNMENT_FIELDS = [f.attname for f in Assignment._meta.concrete_fields]
_PAIR_FIELDS = [f.attname for f in Pair._meta.concrete_fields]
_PROMPT_FIELDS = ["id", "text"]  # the rest (JSON tags among them) is deferred
_IMAGE_FIELDS = ["id", "file", "width", "height"]  # in field order; the rest is deferred


def _image_columns(side: str) -> str:
    return ", ".join(
        f"(SELECT {_column(Image, name)} FROM {Image._meta.db_table} WHERE id = p.image_{side}_id)"
        for name in _IMAGE_FIELDS[1:]
    )


# Scalar subqueries rather than joins to prompt and images: PostgreSQL plans them in a quarter of the time
# (0.14 against 0.59 ms), and planning was most of what this query cost it.
_ASSIGNMENTS_WITH_IMAGES = f"""
    SELECT {", ".join(f"a.{_column(Assignment, n)}" for n in _ASSIGNMENT_FIELDS)},
        {", ".join(f"p.{_column(Pair, n)}" for n in _PAIR_FIELDS)},
        (SELECT {_column(Prompt, "text")} FROM {Prompt._meta.db_table} WHERE id = p.prompt_id),
        {_image_columns("a")}, {_image_columns("b")}
    FROM {Assignment._meta.db_table} a JOIN {Pair._meta.db_table} p ON p.id = a.pair_id
    WHERE a.id = ANY(%(ids)s)
"""


def assignments_with_images(*, ids: list[int]) -> list[Assignment]:
    """The assignments `ids`, in that order, with pair, prompt and both images loaded in one query (on PostgreSQL
    only the prompt's text and the images' file and size; other fields load when first read)."""
    if not ids:
        return []
    if connection.vendor != "postgresql":
        rows = Assignment.objects.filter(pk__in=ids).select_related("pair__prompt", "pair__image_a", "pair__image_b")
        by_id = {a.pk: a for a in rows}
        return [by_id[i] for i in ids]
    with connection.cursor() as cursor:
        cursor.execute(_ASSIGNMENTS_WITH_IMAGES, {"ids": ids})
        rows = cursor.fetchall()
    by_id = {}
    n_assignment, n_pair = len(_ASSIGNMENT_FIELDS), len(_PAIR_FIELDS)
    for row in rows:
        assignment = Assignment.from_db(connection.alias, _ASSIGNMENT_FIELDS, row[:n_assignment])
        pair = Pair.from_db(connection.alias, _PAIR_FIELDS, row[n_assignment : n_assignment + n_pair])
        text, file_a, width_a, height_a, file_b, width_b, height_b = row[n_assignment + n_pair :]
        pair.prompt = Prompt.from_db(connection.alias, _PROMPT_FIELDS, [pair.prompt_id, text])
        pair.image_a = Image.from_db(connection.alias, _IMAGE_FIELDS, [pair.image_a_id, file_a, width_a, height_a])
        pair.image_b = Image.from_db(connection.alias, _IMAGE_FIELDS, [pair.image_b_id, file_b, width_b, height_b])
        assignment.pair = pair
        by_id[assignment.pk] = assignment
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
