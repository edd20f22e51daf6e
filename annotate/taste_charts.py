"""The lead's page of a taste in the admin: the model changing round by round, in charts and in pictures."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from annotate import charts, dashboard
from annotate.models import Taste


class TasteCharts:
    """Adds `<taste id>/charts/` to TasteAdmin, and a link to it in the list and on the change page."""

    admin_site: admin.AdminSite

    def get_urls(self):
        return [
            path("<int:taste_id>/charts/", self.admin_site.admin_view(self.charts_view), name="annotate_taste_charts"),
            *super().get_urls(),
        ]

    @admin.display(description="charts")
    def charts_link(self, taste: Taste) -> str:
        if taste.pk is None:
            return "—"
        return format_html('<a href="{}">rounds, drift and diversity</a>', reverse("admin:annotate_taste_charts",
                                                                                 args=[taste.pk]))

    def charts_view(self, request: HttpRequest, taste_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        taste = get_object_or_404(Taste, pk=taste_id)
        page = dashboard.taste_page(taste=taste)
        svg = {
            "win": charts.win_rate_chart(page["rounds"]), "training": charts.training_chart(page["curves"]),
            "diagnostics": charts.diagnostics_chart(page["checkpoints"]),
            "diversity": charts.diversity_chart(page["checkpoints"], page["rounds"]),
            "labels": charts.labels_chart(page["rounds"]),
        }
        page["strengths"] = dashboard.checkpoint_strengths(taste=taste, checkpoints=page["checkpoints"])
        measured = {r["child"]: r["cumulative"] for r in page["rounds"] if r["child"] and r["cumulative"]["n"]}
        for row in page["strengths"]:
            row["measured"] = measured.get(row["id"])
        svg["strengths"] = charts.strength_chart(page["strengths"])
        context = {
            **self.admin_site.each_context(request), "title": f"{taste.name}: the model round by round",
            "taste": taste, "page": page, "charts": {name: mark_safe(chart) for name, chart in svg.items()},
            "diagnostic_keys": dashboard.DIAGNOSTICS, "opts": self.model._meta,
            "final_curves": {number: steps[-1] for number, steps in page["curves"].items() if steps},
        }
        return TemplateResponse(request, "admin/annotate/taste/charts.html", context)
