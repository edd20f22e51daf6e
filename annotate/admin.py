"""Admin for every domain model; history (images, pairs, assignments, judgements) is read-only."""

from django.contrib import admin
from django.utils.html import format_html

from annotate.models import (
    Assignment,
    BaseModel,
    Checkpoint,
    Image,
    Judgement,
    Pair,
    Prompt,
    Round,
    Taste,
    TasteMembership,
)


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
class TasteAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "current_checkpoint", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["current_checkpoint"]
    inlines = [TasteMembershipInline]


@admin.register(TasteMembership)
class TasteMembershipAdmin(admin.ModelAdmin):
    list_display = ["annotator", "taste", "joined_at"]
    list_filter = ["taste"]
    autocomplete_fields = ["annotator", "taste"]


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "default_steps", "default_guidance", "default_width", "default_height"]
    search_fields = ["name", "path"]


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["id", "taste", "base_model", "parent", "status", "created_at"]
    list_filter = ["taste", "status"]
    # Lineage and status change only through rounds; editing them by hand would rewrite history.
    readonly_fields = ["taste", "base_model", "parent", "lora_path", "status", "metrics", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "text", "split", "tags"]
    list_filter = ["split"]
    search_fields = ["text"]


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["id", "taste", "number", "state", "pair_quota", "label_quota", "overlap", "updated_at"]
    list_filter = ["taste", "state"]
    readonly_fields = ["state", "parent_checkpoint", "child_checkpoint", "progress", "error", "created_at", "updated_at"]


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["id", "thumbnail", "prompt", "checkpoint", "seed", "width", "height"]
    list_select_related = ["prompt"]
    search_fields = ["sha256", "prompt__text"]

    @admin.display(description="image")
    def thumbnail(self, image: Image) -> str:
        return format_html('<img src="{}" style="height:64px" alt="">', image.file.url)


@admin.register(Pair)
class PairAdmin(ReadOnlyAdmin):
    list_display = ["id", "taste", "round", "kind", "prompt", "judged_count", "assigned_count", "overlap"]
    list_filter = ["taste", "kind", "round"]
    list_select_related = ["taste", "round__taste", "prompt"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "annotator", "state", "left_is_a", "claimed_at", "lease_expires_at"]
    list_filter = ["state"]
    list_select_related = ["pair", "annotator"]


@admin.register(Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "annotator", "choice", "flags_a", "flags_b", "duration_ms", "created_at"]
    list_filter = ["choice", "pair__taste"]
    list_select_related = ["pair", "annotator"]
