"""Routes of the annotator pages."""

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from frontend import views
from frontend.invite import InviteView

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/", views.annotate_pick, name="annotate"),
    path("annotate/<slug:slug>/", views.annotate_page, name="annotate-taste"),
    path("invite/<uidb64>/<token>/", InviteView.as_view(), name="invite"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    # Pages link the SVG; a client that asks for the conventional /favicon.ico is sent there.
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg"), permanent=True)),
]
