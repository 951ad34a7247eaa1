"""Django admin: read-mostly views of the platform's rows, for staff."""

from __future__ import annotations

from django.contrib import admin

from labeling.models import Campaign, EmbeddingJob, ImportJob, Item, Upload


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ["name", "created_by", "created_at"]
    filter_horizontal = ["annotators"]


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ["filename", "campaign", "n_rows", "n_created", "created_at"]
    list_filter = ["campaign"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ["position", "campaign", "text", "gold"]
    list_filter = ["campaign"]
    search_fields = ["text"]
    readonly_fields = ["text_sha256", "position", "upload"]


@admin.register(EmbeddingJob)
class EmbeddingJobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ["pk", "campaign", "status", "n_done", "n_total", "attempt", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in EmbeddingJob._meta.fields]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ["pk", "campaign", "filename", "status", "size_bytes", "attempt", "created_at"]
    list_filter = ["status"]
    # The stored file can be tens of MB: never rendered.
    exclude = ["data"]
    readonly_fields = [f.name for f in ImportJob._meta.fields if f.name != "data"]
