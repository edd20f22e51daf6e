"""Page views: the landing page, the taste picker, the judging page and logging out."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie

from annotate import selectors, services
from annotate.access import access_taste_for_annotation, user_is_lead
from annotate.errors import DomainError
from annotate.models import Judgement
from frontend.markdown import markdown_html, text_version


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Leads without a cohort go to the admin; everyone else to the taste picker."""
    if user_is_lead(request.user) and not request.user.tastes.exists():
        return redirect("admin:index")
    return redirect("annotate")


@login_required
def annotate_pick(request: HttpRequest) -> HttpResponse:
    """The annotator's tastes; with only one, straight to its judging page."""
    profile = selectors.annotator_profile(annotator=request.user)
    if len(profile["tastes"]) == 1:
        return redirect("annotate-taste", slug=profile["tastes"][0]["slug"])
    return render(request, "frontend/pick.html", {"profile": profile})


@login_required
@ensure_csrf_cookie
def annotate_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The judging page for one taste; everything after the first paint goes through the API."""
    try:
        taste = access_taste_for_annotation(user=request.user, slug=slug)
    except DomainError as exc:
        return render(request, "frontend/pick.html", {"error": exc.message,
                      "profile": selectors.annotator_profile(annotator=request.user)}, status=exc.status)
    config = {
        "taste": taste.slug,
        "tasteName": taste.name,
        "username": request.user.get_username(),
        "flags": [{"value": value, "label": label} for value, label in Judgement.Flag.choices],
        "ahead": 3,
        "guidelines": text_version(taste.guidelines) if taste.guidelines.strip() else None,
    }
    guidelines_html = markdown_html(taste.guidelines) if taste.guidelines.strip() else ""
    context = {"taste": taste, "config": config, "guidelines_html": guidelines_html}
    return render(request, "frontend/annotate.html", context)


class LogoutView(auth_views.LogoutView):
    """Log out by POST; a GET (a typed or bookmarked /logout/) asks first instead of answering a blank 405."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect("login")
        return render(request, "registration/logout_confirm.html")

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated:  # the pairs on this screen go back to the pool at once
            services.annotator_leases_release(annotator_id=request.user.pk)
        return super().post(request, *args, **kwargs)
