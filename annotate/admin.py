"""Admin for every domain model; history (images, pairs, assignments, judgements) is read-only."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from annotate.export_jobs import export_request, exports_active
from annotate.models import (
    Assignment,
    BaseModel,
    Checkpoint,
    Export,
    Image,
    Judgement,
    Pair,
    Prompt,
    Round,
    Taste,
    TasteMembership,
    TrainingJob,
)
from annotate.annotators_admin import TasteAnnotators
from annotate.gold_admin import PairGoldActions, PairGoldPage
from annotate.lora_admin import CheckpointLoraDownloads
from annotate.onboarding_admin import TasteOnboarding
from annotate.review import RoundReview, thumbnail
from annotate.round_admin import RoundCockpit
from annotate.taste_charts import TasteCharts
from annotate.tokens import token_revoke, token_rotate


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that record what happened: viewable, never edited or deleted by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TasteMembershipInline(admin.TabularInline):
    model = TasteMembership
    extra = 0
    autocomplete_fields = ["annotator"]


@admin.register(Taste)
class TasteAdmin(TasteOnboarding, TasteCharts, TasteAnnotators, admin.ModelAdmin):
    list_display = ["slug", "name", "current_checkpoint", "charts_link", "annotators_link", "add_annotators_link",
                    "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["current_checkpoint", "charts_link", "annotators_link", "camps_note", "add_annotators_link"]
    inlines = [TasteMembershipInline]


@admin.register(TasteMembership)
class TasteMembershipAdmin(admin.ModelAdmin):
    list_display = ["annotator", "taste", "joined_at"]
    list_filter = ["taste"]
    autocomplete_fields = ["annotator", "taste"]


class TastesOfUserInline(admin.TabularInline):
    model = TasteMembership
    fk_name = "annotator"
    extra = 0
    autocomplete_fields = ["taste"]
    verbose_name, verbose_name_plural = "taste", "tastes (cohorts this user annotates for)"


admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class PersonAdmin(UserAdmin):
    """Django's user admin, plus the tastes each person annotates for and their API token."""

    list_display = ["username", "taste_list", "is_staff", "is_active", "last_login", "date_joined"]
    readonly_fields = ["api_token", "taste_list"]
    inlines = [TastesOfUserInline]
    actions = ["rotate_tokens", "revoke_tokens"]
    # Who is a lead or a superuser, and what they may do, is for superusers to decide.
    PRIVILEGES = ["is_staff", "is_superuser", "groups", "user_permissions"]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else [*fields, *self.PRIVILEGES]

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def _token_targets(self, request, queryset):
        return queryset if request.user.is_superuser else queryset.filter(is_superuser=False)

    @admin.action(description="Rotate the API tokens of the selected users (old ones stop working)",
                  permissions=["change"])
    def rotate_tokens(self, request, queryset) -> None:
        users = list(self._token_targets(request, queryset))
        for user in users:
            token_rotate(user=user)
        self.message_user(request, f"Rotated the API tokens of {len(users)} user(s): each user's page shows the new one.")

    @admin.action(description="Revoke the API tokens of the selected users", permissions=["change"])
    def revoke_tokens(self, request, queryset) -> None:
        revoked = sum(token_revoke(user=user) for user in self._token_targets(request, queryset))
        self.message_user(request, f"Revoked {revoked} API token(s).")

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return super().get_fieldsets(request, obj)
        first, *rest = super().get_fieldsets(request, obj)
        return [first, ("Chisel", {"fields": ["api_token", "taste_list"]}), *rest]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("auth_token").prefetch_related("tastes")

    @admin.display(description="API token")
    def api_token(self, user) -> str:
        token = getattr(user, "auth_token", None)
        if token is None:
            return "— (none: the rotate action, manage.py rotate_token or Tastes → add annotators gives one)"
        return format_html('<code style="user-select:all">{}</code>', token.key)

    @admin.display(description="tastes")
    def taste_list(self, user) -> str:
        return ", ".join(sorted(taste.slug for taste in user.tastes.all())) or "—"


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "default_steps", "default_guidance", "default_width", "default_height"]
    search_fields = ["name", "path"]


@admin.register(Checkpoint)
class CheckpointAdmin(CheckpointLoraDownloads, admin.ModelAdmin):
    list_display = ["id", "taste", "base_model", "parent", "status", "created_at"]
    list_filter = ["taste", "status"]
    # Lineage and status change only through rounds; editing them by hand would rewrite history.
    readonly_fields = ["taste", "base_model", "parent", "lora_path", "lora_downloads", "status", "metrics", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "text", "split", "tags"]
    list_filter = ["split"]
    search_fields = ["text"]


@admin.register(Round)
class RoundAdmin(RoundReview, RoundCockpit, admin.ModelAdmin):
    """Rounds are launched with a form and moved by actions; their rows are never edited by hand."""

    list_display = ["id", "taste", "number", "state", "review_link", "paused", "pair_quota", "label_quota", "overlap",
                    "verdict", "updated_at"]
    list_filter = ["taste", "state"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Round._meta.fields]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="decision")
    def verdict(self, round_: Round) -> str:
        decision = round_.decision
        if not decision:
            return "—"
        rate = (decision.get("win") or {}).get("rate")
        shown = "—" if rate is None else f"{rate:.2f}"
        return f"{'promoted' if decision['promote'] else 'rejected'} (win {shown})"


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["id", "thumbnail", "prompt", "checkpoint", "seed", "width", "height"]
    list_select_related = ["prompt"]
    search_fields = ["sha256", "prompt__text"]

    @admin.display(description="image")
    def thumbnail(self, image: Image) -> str:
        return thumbnail(image, size=64)


class ShowsPairImages:
    """Both images of a pair, in the list (small) and first on the change page (large), linking to full size."""

    readonly_fields = ["images_large"]

    def get_fields(self, request, obj=None):
        return ["images_large", *(f for f in super().get_fields(request, obj) if f != "images_large")]

    def pair_of(self, obj) -> Pair:
        return obj

    def outlines(self, obj) -> tuple[str, str]:
        return "", ""

    @admin.display(description="images A · B")
    def images(self, obj) -> str:
        return self._images(obj, size=64)

    @admin.display(description="images A · B")
    def images_large(self, obj) -> str:
        return self._images(obj, size=256)

    def _images(self, obj, *, size: int) -> str:
        pair = self.pair_of(obj)
        outline_a, outline_b = self.outlines(obj)
        cell = '<span style="display:inline-block;text-align:center;margin-right:6px">{}<br>{}</span>'
        return format_html('<span style="white-space:nowrap">' + cell + cell + "</span>",
                           thumbnail(pair.image_a, size=size, outline=outline_a), "A",
                           thumbnail(pair.image_b, size=size, outline=outline_b), "B")


class JudgementsOfPairInline(admin.TabularInline):
    """Every answer a pair got (choices and flags relative to images A and B)."""

    model = Judgement
    fields = ["annotator", "choice", "flags_a", "flags_b", "duration_ms", "created_at", "amendments"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("annotator")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Pair)
class PairAdmin(PairGoldActions, PairGoldPage, ShowsPairImages, ReadOnlyAdmin):
    list_display = ["id", "images", "taste", "round", "kind", "gold_choice", "prompt", "judged_count", "assigned_count", "overlap",
                    "review"]
    list_filter = ["taste", "kind", "round"]
    list_select_related = ["taste", "round__taste", "prompt", "image_a", "image_b"]
    readonly_fields = ["images_large", "review"]
    inlines = [JudgementsOfPairInline]

    @admin.display(description="review")
    def review(self, pair: Pair) -> str:
        return format_html('<a href="{}">round {}</a>', reverse("admin:annotate_round_review", args=[pair.round_id]),
                           pair.round.number)


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "annotator", "state", "left_is_a", "claimed_at", "lease_expires_at"]
    list_filter = ["state"]
    list_select_related = ["pair", "annotator"]


@admin.register(Judgement)
class JudgementAdmin(ShowsPairImages, ReadOnlyAdmin):
    """The chosen image is outlined in green; both are outlined in red when judged both bad."""

    list_display = ["id", "images", "pair", "annotator", "choice", "flags_a", "flags_b", "duration_ms", "created_at"]
    list_filter = ["choice", "pair__taste"]
    list_select_related = ["pair__image_a", "pair__image_b", "annotator"]

    def pair_of(self, judgement: Judgement) -> Pair:
        return judgement.pair

    def outlines(self, judgement: Judgement) -> tuple[str, str]:
        chosen, bad = "#2e9e44", "#c62828"
        return {"a": (chosen, ""), "b": ("", chosen), "both_bad": (bad, bad)}.get(judgement.choice, ("", ""))


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "round", "state", "attempt", "heartbeat_at", "candidate", "finished_at"]
    list_filter = ["state"]
    list_select_related = ["round__taste"]


class ExportForm(forms.ModelForm):
    """The export's filters and format; stored as the job's options."""

    format = forms.ChoiceField(choices=[("pickapic", "Pick-a-Pic v2 parquet"), ("jsonl", "JSONL + image files")])
    aggregate = forms.ChoiceField(choices=[("none", "one row per judgement"), ("majority", "one row per pair (majority)")])
    ties = forms.ChoiceField(choices=[("drop", "drop ties"), ("keep", "keep ties as 0.5")])
    image_format = forms.ChoiceField(choices=[("original", "stored lossless originals"), ("jpeg", "JPEG")])
    tastes = forms.ModelMultipleChoiceField(Taste.objects.all(), required=False, to_field_name="slug")
    rounds = forms.ModelMultipleChoiceField(Round.objects.select_related("taste"), required=False)
    annotators = forms.ModelMultipleChoiceField(get_user_model().objects.all(), required=False, to_field_name="username")
    kinds = forms.MultipleChoiceField(choices=Pair.Kind.choices, required=False)
    since = forms.DateTimeField(required=False)
    until = forms.DateTimeField(required=False)

    class Meta:
        model = Export
        fields: list[str] = []

    def export_options(self) -> dict:
        data = dict(self.cleaned_data)
        data["tastes"] = [t.slug for t in data["tastes"]]
        data["rounds"] = [r.pk for r in data["rounds"]]
        data["annotators"] = [u.username for u in data["annotators"]]
        return data


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "state", "progress", "requested_by", "created_at", "finished_at", "download"]
    list_filter = ["state"]
    readonly_fields = ["state", "progress", "download", "options", "summary", "error", "requested_by", "created_at",
                       "finished_at"]

    class Media:
        js = ["annotate/export_progress.js"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ExportForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(ExportForm.base_fields)
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def add_view(self, request, form_url="", extra_context=None):
        limit = settings.CHISEL_MAX_ACTIVE_EXPORTS
        if request.method == "POST" and exports_active(user=request.user) >= limit:
            messages.error(request, f"You already have {limit} exports queued or running; wait for one to finish.")
            return redirect("admin:annotate_export_changelist")
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        created = export_request(user=request.user, options=form.export_options())
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.display(description="progress")
    def progress(self, export: Export) -> str:
        return format_html(
            '<progress data-export="{}" data-state="{}" value="{}" max="{}"></progress> <span>{} / {} judgements</span>',
            export.pk, export.state, export.done, max(export.total, 1), export.done, export.total,
        )

    @admin.display(description="file")
    def download(self, export: Export) -> str:
        if export.state != Export.State.DONE:
            return "—"
        return format_html('<a href="{}">download</a>', reverse("export-download", args=[export.pk]))
