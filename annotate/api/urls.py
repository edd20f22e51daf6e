"""Routes of API v1."""

from django.urls import path

from annotate.api import annotators, exports, rounds, views

urlpatterns = [
    path("assignments/next/", views.AssignmentNextApi.as_view(), name="assignment-next"),
    path("assignments/<int:assignment_id>/skip/", views.AssignmentSkipApi.as_view(), name="assignment-skip"),
    path("assignments/<int:assignment_id>/judgement/", views.JudgementAmendApi.as_view(), name="judgement-amend"),
    path("judgements/", views.JudgementCreateApi.as_view(), name="judgement-create"),
    path("me/", views.MeApi.as_view(), name="me"),
    path("tastes/", views.TasteListApi.as_view(), name="taste-list"),
    path("tastes/<slug:slug>/", views.TasteDetailApi.as_view(), name="taste-detail"),
    path("tastes/<slug:slug>/annotators/", annotators.TasteAnnotatorsApi.as_view(), name="taste-annotators"),
    path("pairs/<int:pair_id>/gold/", annotators.PairGoldApi.as_view(), name="pair-gold"),
    path("rounds/", rounds.RoundListApi.as_view(), name="round-list"),
    path("rounds/<int:round_id>/", rounds.RoundDetailApi.as_view(), name="round-detail"),
    path("exports/", exports.ExportCreateApi.as_view(), name="export-create"),
    path("exports/<int:export_id>/", exports.ExportDetailApi.as_view(), name="export-detail"),
    path("exports/<int:export_id>/download/", exports.ExportDownloadApi.as_view(), name="export-download"),
]
