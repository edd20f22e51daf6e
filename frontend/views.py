"""Page views: the landing page sends leads to the admin and shows annotators their tastes."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from annotate import selectors
from annotate.access import user_is_lead


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if user_is_lead(request.user) and not request.user.tastes.exists():
        return redirect("admin:index")
    return render(request, "frontend/home.html", {"profile": selectors.annotator_profile(annotator=request.user)})
