"""The invite page: an annotator opens the one-time link a lead gave them and sets their own password."""

from django.contrib.auth import views as auth_views
from django.urls import reverse_lazy

from annotate.onboarding import invite_tokens


class InviteView(auth_views.PasswordResetConfirmView):
    """Django's password-reset confirmation with invite tokens: the form runs the password validators, setting
    the password spends the link, and the annotator is logged in and sent to their tastes."""

    token_generator = invite_tokens
    template_name = "registration/invite.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"  # axes is also configured
    success_url = reverse_lazy("home")
    title = "Set your password"

    def dispatch(self, *args, **kwargs):
        response = super().dispatch(*args, **kwargs)
        if not self.validlink and response.status_code == 200:
            response.status_code = 410  # used, expired or mistyped: the page says so
        return response
