"""Routes of API v1."""

from django.urls import path

from annotate.api import views

urlpatterns = [
    path("assignments/next/", views.AssignmentNextApi.as_view(), name="assignment-next"),
    path("assignments/<int:assignment_id>/skip/", views.AssignmentSkipApi.as_view(), name="assignment-skip"),
    path("assignments/<int:assignment_id>/judgement/", views.JudgementAmendApi.as_view(), name="judgement-amend"),
    path("judgements/", views.JudgementCreateApi.as_view(), name="judgement-create"),
    path("me/", views.MeApi.as_view(), name="me"),
    path("tastes/", views.TasteListApi.as_view(), name="taste-list"),
    path("tastes/<slug:slug>/", views.TasteDetailApi.as_view(), name="taste-detail"),
]
