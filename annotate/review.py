"""The lead's review of a round in the admin: its pairs with both images and every answer, disagreements first."""

from dataclasses import dataclass

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from annotate.models import Assignment, Image, Judgement, Pair, Round

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Answers a lead reads: judged pairs, skipped ones, and leases still out.
SHOWN_STATES = (Assignment.State.JUDGED, Assignment.State.SKIPPED, Assignment.State.LEASED)


def thumbnail(image: Image, *, size: int, outline: str = "") -> str:
    """`image` scaled to fit `size` px, linking to the full file; small images are enlarged with crisp pixels."""
    scale = size / max(image.width, image.height, 1)
    crisp = "image-rendering:pixelated;" if scale > 1 else ""
    border = f"outline:3px solid {outline};outline-offset:1px;" if outline else ""
    return format_html(
        '<a href="{}" target="_blank" title="full size ({}×{})"><img src="{}" width="{}" height="{}" alt="image {}"'
        ' style="{}{}vertical-align:middle"></a>',
        image.file.url, image.width, image.height, image.file.url, round(image.width * scale),
        round(image.height * scale), image.pk, crisp, border,
    )


@dataclass(frozen=True)
class ReviewFilters:
    """Which of a round's pairs to show: those an annotator answered, of one kind, only disagreements."""

    annotator_id: int | None = None
    kind: str | None = None
    only_disagreements: bool = False

    @classmethod
    def from_query(cls, query) -> "ReviewFilters":
        annotator = query.get("annotator", "")
        kind = query.get("kind", "")
        return cls(
            annotator_id=int(annotator) if annotator.isdigit() else None,
            kind=kind if kind in Pair.Kind.values else None,
            only_disagreements=query.get("disagreements") == "1",
        )


def round_review_pairs(*, round_: Round, filters: ReviewFilters) -> QuerySet[Pair]:
    """The round's pairs with prompt and images, most disagreed first (the number of different answers they got),
    then the most judged; `answers` counts those different answers."""
    different_answers = (
        Judgement.objects.filter(pair=OuterRef("pk")).order_by().values("pair")
        .annotate(n=Count("choice", distinct=True)).values("n")
    )
    pairs = Pair.objects.filter(round=round_).annotate(
        answers=Coalesce(Subquery(different_answers, output_field=IntegerField()), 0)
    )
    if filters.annotator_id is not None:
        answered = Assignment.objects.filter(pair=OuterRef("pk"), annotator_id=filters.annotator_id,
                                             state__in=[Assignment.State.JUDGED, Assignment.State.SKIPPED])
        pairs = pairs.filter(Exists(answered))
    if filters.kind:
        pairs = pairs.filter(kind=filters.kind)
    if filters.only_disagreements:
        pairs = pairs.filter(answers__gt=1)
    return pairs.select_related("prompt", "image_a", "image_b").order_by("-answers", "-judged_count", "id")


def round_review_summary(*, round_: Round) -> dict:
    """Pairs, judged pairs and disagreements of the whole round, in one query."""
    pairs = round_review_pairs(round_=round_, filters=ReviewFilters()).order_by()
    return pairs.aggregate(pairs=Count("id"), judged=Count("id", filter=Q(judged_count__gt=0)),
                           disagreements=Count("id", filter=Q(answers__gt=1)))


def round_review_answers(*, pairs: list[Pair]) -> dict[int, list[Assignment]]:
    """Pair id → its judged, skipped and leased assignments with annotator and judgement, oldest first."""
    answers: dict[int, list[Assignment]] = {pair.pk: [] for pair in pairs}
    rows = (
        Assignment.objects.filter(pair__in=[pair.pk for pair in pairs], state__in=SHOWN_STATES)
        .select_related("annotator", "judgement").order_by("pair_id", "claimed_at", "id")
    )
    for assignment in rows:
        answers[assignment.pair_id].append(assignment)
    return answers


def round_review_annotators(*, round_: Round) -> QuerySet:
    """Everyone who answered a pair of the round, by name."""
    return (
        get_user_model().objects.filter(
            Exists(Assignment.objects.filter(annotator=OuterRef("pk"), pair__round=round_,
                                             state__in=[Assignment.State.JUDGED, Assignment.State.SKIPPED]))
        ).order_by("username").only("id", "username")
    )


CHOICE_TEXT = {"a": "A", "b": "B", "tie": "tie", "both_bad": "both bad"}


def _answer_row(assignment: Assignment, sides: dict[str, str]) -> dict:
    judgement = getattr(assignment, "judgement", None) if assignment.state == Assignment.State.JUDGED else None
    row = {"annotator": assignment.annotator.get_username(), "state": assignment.state,
           "seen": "left" if assignment.left_is_a else "right", "judgement": judgement, "seconds": None}
    if judgement is not None:
        chosen = sides.get(judgement.choice, "")
        row["answer"] = CHOICE_TEXT[judgement.choice] + (f" ({chosen})" if chosen else "")
        row["seconds"] = None if judgement.duration_ms is None else judgement.duration_ms / 1000
    elif assignment.state == Assignment.State.LEASED:
        row["answer"] = f"lease until {assignment.lease_expires_at:%H:%M:%S}"
    else:
        row["answer"] = "skipped"
    return row


def review_cards(*, round_: Round, pairs: list[Pair], size: int = 192) -> list[dict]:
    """What the review page shows of each pair: both images, the side labels and every answer."""
    answers = round_review_answers(pairs=pairs)
    cards = []
    for pair in pairs:
        sides = {}
        if pair.kind in (Pair.Kind.EVAL, Pair.Kind.BASE):
            names = {round_.parent_checkpoint_id: "parent", round_.child_checkpoint_id: "child"}
            if pair.kind == Pair.Kind.BASE:
                names = {pair.image_a.checkpoint_id: "base", round_.child_checkpoint_id: "child"}
            sides = {"a": names.get(pair.image_a.checkpoint_id, ""), "b": names.get(pair.image_b.checkpoint_id, "")}
        cards.append({
            "pair": pair, "disagreement": pair.answers > 1,
            "image_a": thumbnail(pair.image_a, size=size), "image_b": thumbnail(pair.image_b, size=size),
            "side_a": sides.get("a", ""), "side_b": sides.get("b", ""),
            "answers": [_answer_row(a, sides) for a in answers[pair.pk]],
        })
    return cards


class RoundReview:
    """Adds `<round id>/review/` to RoundAdmin, and a link to it in the round list."""

    admin_site: admin.AdminSite

    def get_urls(self):
        return [
            path("<int:round_id>/review/", self.admin_site.admin_view(self.review_view), name="annotate_round_review"),
            *super().get_urls(),
        ]

    @admin.display(description="review")
    def review_link(self, round_: Round) -> str:
        return format_html('<a href="{}">review</a>', reverse("admin:annotate_round_review", args=[round_.pk]))

    def review_view(self, request: HttpRequest, round_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        round_ = get_object_or_404(Round.objects.select_related("taste"), pk=round_id)
        filters = ReviewFilters.from_query(request.GET)
        per_page = request.GET.get("per_page", "")
        per_page = min(int(per_page), MAX_PAGE_SIZE) if per_page.isdigit() and int(per_page) > 0 else PAGE_SIZE
        page = Paginator(round_review_pairs(round_=round_, filters=filters), per_page).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self.admin_site.each_context(request), "title": f"Review round {round_.number} of {round_.taste.slug}",
            "opts": self.model._meta, "round": round_, "page": page, "filters": filters,
            "cards": review_cards(round_=round_, pairs=list(page.object_list)),
            "summary": round_review_summary(round_=round_), "annotators": round_review_annotators(round_=round_),
            "kinds": Pair.Kind.choices, "query": query.urlencode(),
        }
        return TemplateResponse(request, "admin/annotate/round/review.html", context)
