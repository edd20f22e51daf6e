"""The lead's onboarding page in the admin: add annotators to a taste with an invite link or a generated password."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from annotate import onboarding
from annotate.errors import DomainError
from annotate.models import Taste


class AddAnnotatorsForm(forms.Form):
    """Who to add, and how new people get their password."""

    usernames = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 40}),
                                help_text="One username per line (new or existing users).")
    credential = forms.ChoiceField(
        choices=[("invite", "an invite link: they set their own password"),
                 ("password", "a generated password, shown to you once")],
        initial="invite", widget=forms.RadioSelect, label="New users get",
    )
    reset_existing = forms.BooleanField(required=False, label="Existing users with a password get one too",
                                        help_text="Otherwise they keep their password and are only added to the taste.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hours = settings.PASSWORD_RESET_TIMEOUT / 3600
        valid_for = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
        self.fields["credential"].help_text = f"An invite link works once, for {valid_for} (PASSWORD_RESET_TIMEOUT)."

    def clean_usernames(self) -> list[str]:
        names = list(dict.fromkeys(n.strip() for n in self.cleaned_data["usernames"].replace(",", "\n").splitlines()))
        names = [n for n in names if n]
        if not names:
            raise forms.ValidationError("Name at least one user.")
        field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
        for name in names:
            try:
                field.clean(name, None)
            except forms.ValidationError as exc:
                raise forms.ValidationError(f"'{name}': {' '.join(exc.messages)}") from exc
        return names


class TasteOnboarding:
    """Adds `<taste id>/annotators/add/` to TasteAdmin, and a link to it in the list and on the change page."""

    admin_site: admin.AdminSite

    def get_urls(self):
        return [
            path("<int:taste_id>/annotators/add/", self.admin_site.admin_view(self.add_annotators_view),
                 name="annotate_taste_add_annotators"),
            *super().get_urls(),
        ]

    @admin.display(description="annotators")
    def add_annotators_link(self, taste: Taste) -> str:
        if taste.pk is None:
            return "—"
        return format_html('<a href="{}">add annotators</a>', reverse("admin:annotate_taste_add_annotators",
                                                                      args=[taste.pk]))

    def add_annotators_view(self, request: HttpRequest, taste_id: int) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        taste = get_object_or_404(Taste, pk=taste_id)
        form = AddAnnotatorsForm(request.POST or None)
        results = None
        if request.method == "POST" and form.is_valid():
            try:
                results = onboarding.annotators_onboard(
                    usernames=form.cleaned_data["usernames"], taste=taste, credential=form.cleaned_data["credential"],
                    reset_existing=form.cleaned_data["reset_existing"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
        rows = [
            {"result": r, "invite_url": request.build_absolute_uri(r.invite_path) if r.invite_path else "",
             "user_url": reverse("admin:auth_user_change", args=[r.enrolment.user.pk]),
             "tastes": ", ".join(r.enrolment.user.tastes.order_by("slug").values_list("slug", flat=True))}
            for r in results or []
        ]
        context = {**self.admin_site.each_context(request), "title": f"Add annotators to {taste.slug}",
                   "opts": self.model._meta, "taste": taste, "form": form, "rows": rows}
        response = TemplateResponse(request, "admin/annotate/taste/add_annotators.html", context)
        add_never_cache_headers(response)  # passwords and links are shown once
        return response
