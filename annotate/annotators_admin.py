"""The lead's annotator pages in the admin: a taste's annotator table, heat map and camps, one annotator's answers."""

import time

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from annotate import annotator_charts
from annotate.annotator_stats import annotator_recent_pairs, taste_annotator_stats
from annotate.errors import DomainError
from annotate.models import Taste
from annotate.review import thumbnail
from annotate.taste_split import taste_split

# Columns of the annotator table a lead may sort by (the query's ?sort=, a leading "-" for descending).
SORTABLE = ("username", "judged", "skip_rate", "agreement", "camp_agreement", "gold_accuracy", "left_share",
            "median_ms", "too_fast_share", "flag_rate", "longest_streak", "trust", "camp")


def sort_rows(rows: list[dict], key: str) -> list[dict]:
    """The rows sorted by `key` (one of SORTABLE, "-" first for descending); missing values last either way."""
    descending, field = key.startswith("-"), key.lstrip("-")
    if field not in SORTABLE:
        field, descending = "trust", False
    present = [r for r in rows if r[field] is not None]
    return sorted(present, key=lambda r: r[field], reverse=descending) + [r for r in rows if r[field] is None]


class TasteAnnotators:
    """Adds `<taste id>/annotators/` (and one annotator's page under it) to TasteAdmin, with a link on the list."""

    admin_site: admin.AdminSite

    def get_urls(self):
        return [
            path("<int:taste_id>/annotators/", self.admin_site.admin_view(self.annotators_view),
                 name="annotate_taste_annotators"),
            path("<int:taste_id>/annotators/<int:user_id>/", self.admin_site.admin_view(self.annotator_view),
                 name="annotate_taste_annotator"),
            *super().get_urls(),
        ]

    @admin.display(description="annotators")
    def annotators_link(self, taste: Taste) -> str:
        if taste.pk is None:
            return "—"
        return format_html('<a href="{}">agreement and quality</a>',
                           reverse("admin:annotate_taste_annotators", args=[taste.pk]))

    @admin.display(description="camps")
    def camps_note(self, taste: Taste) -> str:
        """On the taste's page: whether its cohort holds two camps, with the figures, and where to split it."""
        if taste.pk is None:
            return "—"
        camps = taste_annotator_stats(taste=taste)["camps"]
        url = reverse("admin:annotate_taste_annotators", args=[taste.pk])
        if not camps["split"]:
            return format_html('One camp (<a href="{}">annotators</a>).', url)
        return format_html(
            '<strong>{} camps</strong>: {}; agreement {} within, {} across. <a href="{}">Evidence and split</a>.',
            len(camps["camps"]), "; ".join(", ".join(c["usernames"]) for c in camps["camps"]),
            *("—" if camps[k] is None else f"{camps[k]:.2f}" for k in ("within_agreement", "across_agreement")), url,
        )

    def annotators_view(self, request: HttpRequest, taste_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        taste = get_object_or_404(Taste, pk=taste_id)
        if request.method == "POST":
            return self._split(request, taste)
        started = time.perf_counter()
        stats = taste_annotator_stats(taste=taste)
        rows = stats["annotators"]
        for row in rows:
            row["spark"] = annotator_charts.sparkline(row["sparkline"])
        order = sorted(range(len(rows)), key=lambda i: (rows[i]["camp"] or 0, rows[i]["username"]))
        heatmap = annotator_charts.agreement_heatmap(stats["matrix"]["usernames"], stats["matrix"]["agreement"], order)
        sort = request.GET.get("sort", "trust")
        camps = stats["camps"]
        context = {
            **self.admin_site.each_context(request), "title": f"{taste.name}: who is judging",
            "taste": taste, "stats": stats, "rows": sort_rows(rows, sort), "sort": sort, "camps": camps,
            "heatmap": mark_safe(heatmap), "opts": self.model._meta, "columns": SORTABLE,
            "split_camp": camps["camps"][-1] if camps["split"] else None,
            "took_ms": round((time.perf_counter() - started) * 1000),
        }
        return TemplateResponse(request, "admin/annotate/taste/annotators.html", context)

    def _split(self, request: HttpRequest, taste: Taste) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        ids = [int(i) for i in request.POST.getlist("annotator") if i.isdigit()]
        users = list(get_user_model().objects.filter(pk__in=ids))
        try:
            new = taste_split(taste=taste, slug=request.POST.get("slug", "").strip(),
                              name=request.POST.get("name", "").strip(), annotators=users)
        except DomainError as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(reverse("admin:annotate_taste_annotators", args=[taste.pk]))
        messages.success(request, f"{new.slug} now has {len(users)} annotators and starts from {taste.slug}'s checkpoint.")
        return HttpResponseRedirect(reverse("admin:annotate_taste_change", args=[new.pk]))

    def annotator_view(self, request: HttpRequest, taste_id: int, user_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        taste = get_object_or_404(Taste, pk=taste_id)
        user = get_object_or_404(get_user_model(), pk=user_id)
        stats = taste_annotator_stats(taste=taste)
        row = next((r for r in stats["annotators"] if r["annotator_id"] == user.pk), None)
        pairs = annotator_recent_pairs(taste=taste, annotator_id=user.pk)
        for item in pairs:
            pair = item["pair"]
            item["image_a"], item["image_b"] = thumbnail(pair.image_a, size=96), thumbnail(pair.image_b, size=96)
        context = {
            **self.admin_site.each_context(request), "title": f"{user.get_username()} in {taste.name}",
            "taste": taste, "annotator": user, "row": row, "pairs": pairs, "opts": self.model._meta,
            "spark": annotator_charts.sparkline(row["sparkline"]) if row else "",
        }
        return TemplateResponse(request, "admin/annotate/taste/annotator.html", context)
