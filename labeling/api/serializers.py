from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labeling.forms import check_labels_in_use, rename_labels
from labeling.models import (
    CAMPAIGN_SETTINGS,
    Campaign,
    ImportJob,
    validate_card_metadata,
    validate_label_set,
)

#: The largest id a database row can have (a 64-bit key): larger ones are a 400, not an
#: integer overflow in the database.
ID_MAX = 2**63 - 1


class CampaignSerializer(serializers.ModelSerializer[Any]):
    labels = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=200),
        min_length=2,
        max_length=20,
        required=False,
    )
    annotators = serializers.SlugRelatedField(
        many=True,
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
    )
    # Renames apply to the labels, decisions and gold items too (docs/platform.md, "Campaign
    # settings"); unlike the edit page, the API needs no confirmation for a learner rebuild.
    rename = serializers.DictField(
        child=serializers.CharField(min_length=1, max_length=200),
        required=False,
        write_only=True,
        help_text="Old label name -> new name (updates only). The renamed label keeps its "
        "place; its labels, decisions and gold items follow. Without `labels`, the label set "
        "is the current one with these renames.",
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    n_items = serializers.IntegerField(read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "labels",
            "rename",
            *CAMPAIGN_SETTINGS,
            "created_by",
            "created_at",
            "stopped_at",
            "n_items",
        ]
        read_only_fields = ["id", "created_by", "created_at", "stopped_at", "n_items"]
        # The schema says what validation enforces: no blank name (blanks are trimmed first).
        extra_kwargs = {"name": {"min_length": 1}}

    def validate_labels(self, value: list[str]) -> list[str]:
        labels = [v.strip() for v in value]
        try:
            validate_label_set(labels)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return labels

    def validate_card_metadata(self, value: object) -> object:
        try:
            validate_card_metadata(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate_rename(self, value: dict[str, str]) -> dict[str, str]:
        if self.instance is None and value:
            raise serializers.ValidationError("A new campaign has no labels to rename yet.")
        renames = {str(old).strip(): new.strip() for old, new in value.items()}
        return {old: new for old, new in renames.items() if old != new}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        campaign = self.instance
        if not isinstance(campaign, Campaign):
            return attrs
        renames = attrs.get("rename") or {}
        if "labels" not in attrs and not renames:
            return attrs
        labels = attrs.get("labels") or [renames.get(v, v) for v in campaign.labels]
        try:
            validate_label_set(labels)
            check_labels_in_use(campaign, labels, renames)
        except DjangoValidationError as exc:
            field = "labels" if "labels" in attrs else "rename"
            messages = [
                'To rename a label, send "rename": {"old": "new"}.'
                if m.startswith("To rename")
                else m
                for m in exc.messages
            ]
            raise serializers.ValidationError({field: messages}) from None
        attrs["labels"] = labels
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Campaign:
        validated_data.pop("rename", None)
        return super().create(validated_data)

    def update(self, instance: Campaign, validated_data: dict[str, Any]) -> Campaign:
        renames = validated_data.pop("rename", None) or {}
        with transaction.atomic():
            if renames:
                Campaign.objects.select_for_update().filter(pk=instance.pk).exists()
                rename_labels(instance, renames)
            return super().update(instance, validated_data)

    def to_representation(self, instance: Campaign) -> dict[str, Any]:
        data = super().to_representation(instance)
        if data.get("n_items") is None:
            data["n_items"] = instance.items.count()
        return data


class ItemSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    metadata = serializers.DictField()
    labels = serializers.ListField(child=serializers.CharField(), help_text="Active labels.")
    gold = serializers.CharField(required=False, help_text="Managers only.")


class NextItemSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    text = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()


class LabelInSerializer(serializers.Serializer[Any]):
    item = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    value = serializers.CharField(max_length=200)
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class LabelOutSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    item = serializers.IntegerField()
    value = serializers.CharField()
    comment = serializers.CharField()
    created = serializers.BooleanField(help_text="False: a repeated submission; the first stands.")


class ModelVersionSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    status = serializers.CharField()
    trigger = serializers.CharField()
    n_labels = serializers.IntegerField()
    chosen = serializers.CharField()
    metrics = serializers.DictField()
    embedding_model = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class PredictInSerializer(serializers.Serializer[Any]):
    # Entries are checked in the view (non-empty strings, with their indices named); the
    # schema says what the view enforces: at least one entry.
    texts = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        error_messages={"empty": "Send at least one text."},
    )


class PredictionSerializer(serializers.Serializer[Any]):
    # A field named like Field.label: DRF's metaclass collects it, the stubs see the attribute.
    label = serializers.CharField()  # type: ignore[assignment]
    confidence = serializers.FloatField(help_text="Calibrated probability of ``label``.")
    probabilities = serializers.DictField(
        child=serializers.FloatField(),
        help_text="Calibrated probability of every label (temperature scaling fitted on the "
        "version's labels; docs/learner.md, Calibration); they sum to 1.",
    )
    scores = serializers.DictField(
        child=serializers.FloatField(), help_text="Raw network scores (margins), uncalibrated."
    )


class PredictOutSerializer(serializers.Serializer[Any]):
    model_version = serializers.IntegerField()
    predictions = PredictionSerializer(many=True)


class ImportOptionsSerializer(serializers.Serializer[Any]):
    text_column = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text="Detected if blank."
    )
    gold_column = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text='Detected if blank; "-" imports no gold labels (the column stays metadata).',
    )
    background = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Run on a worker and answer 202 with a job to poll. Default: files over "
        "IMPORT_INLINE_BYTES run on a worker, smaller ones during the request.",
    )
    near_duplicates = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0.5,
        max_value=1.0,
        help_text="Look for near-duplicates once the new items are embedded: pairs with an "
        "earlier item whose embeddings' cosine similarity is at least this (0.5 to 1.0, e.g. "
        "0.95). Omitted or null: no check.",
    )


class ImportFileSerializer(ImportOptionsSerializer):
    # An empty file reaches the upload checks, which say so in their words.
    file = serializers.FileField(
        allow_empty_file=True, help_text="Any upload page format (CSV, TSV, JSON, Parquet, …)."
    )


class ImportItemsSerializer(ImportOptionsSerializer):
    items = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        help_text='Objects such as {"text": "...", "gold": "positive"}; other keys are kept '
        "as metadata. Checked like the lines of a JSON Lines upload.",
    )


class ImportResultSerializer(serializers.Serializer[Any]):
    n_rows = serializers.IntegerField()
    n_created = serializers.IntegerField()
    n_existing = serializers.IntegerField(help_text="Texts already in the campaign (merged).")
    n_blank = serializers.IntegerField(help_text="Rows with an empty text (skipped).")
    n_duplicates = serializers.IntegerField()
    n_gold = serializers.IntegerField()
    n_labels = serializers.IntegerField(
        default=0, help_text="Labels of the 'imported' annotator (Label Studio annotations)."
    )
    format = serializers.CharField(
        default="", help_text="csv, tsv, jsonl, json, labelstudio, parquet, arrow or datasets."
    )
    text_column = serializers.CharField()
    gold_column = serializers.CharField()
    message = serializers.CharField()
    near_duplicates = serializers.FloatField(
        default=None, allow_null=True, help_text="The near-duplicate threshold asked for."
    )


class ImportJobSerializer(serializers.ModelSerializer[Any]):
    result = serializers.SerializerMethodField(help_text="Counts, once the job is done.")
    # A field named like Serializer.errors (collected by DRF's metaclass; the stubs see the
    # property).
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.CharField(),
        read_only=True,
        help_text="Why the file was refused (status failed; nothing was imported).",
    )

    url = serializers.SerializerMethodField(help_text="Poll this for the job's progress.")

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "url",
            "status",
            "filename",
            "size_bytes",
            "background",
            "text_column",
            "gold_column",
            "upload",
            "result",
            "errors",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: ImportJob) -> str:
        path = reverse("api-campaign-import-job", kwargs={"pk": job.campaign_id, "job_id": job.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(ImportResultSerializer(allow_null=True))
    def get_result(self, job: ImportJob) -> dict[str, Any] | None:
        # (A job not done yet carries only its options there.)
        return (job.result or None) if job.status == ImportJob.Status.DONE else None


class AnnotatorMetricsSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    n_labels = serializers.IntegerField()
    last_hour = serializers.IntegerField()
    per_hour = serializers.FloatField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    n_gold = serializers.IntegerField(help_text="Their labels on gold items.")


class AgreementSerializer(serializers.Serializer[Any]):
    statistic = serializers.CharField(help_text="Cohen's kappa, Fleiss' kappa, or empty.")
    value = serializers.FloatField(allow_null=True)
    n_items = serializers.IntegerField()


class EmbeddingStatusSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    model_name = serializers.CharField()
    n_done = serializers.IntegerField()
    n_total = serializers.IntegerField()
    dim = serializers.IntegerField(allow_null=True)
    device = serializers.CharField()
    error = serializers.CharField()


class CurvePointSerializer(serializers.Serializer[Any]):
    n_labels = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(
        allow_null=True, help_text="Centre network on gold items not used for training."
    )
    n_gold = serializers.IntegerField()
    eval_accuracy = serializers.FloatField(
        allow_null=True,
        help_text="Centre network on the labeled evaluation items (never trained on).",
    )
    eval_low = serializers.FloatField(allow_null=True, help_text="Wilson 95 % interval, low.")
    eval_high = serializers.FloatField(allow_null=True, help_text="Wilson 95 % interval, high.")
    n_eval = serializers.IntegerField(help_text="Labeled evaluation items measured.")
    cv_accuracy = serializers.FloatField(
        allow_null=True, help_text="Cross-validated estimate from the training labels."
    )
    log_volume = serializers.FloatField(allow_null=True)
    disagreement = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)


class LearnerDiagnosticsSerializer(serializers.Serializer[Any]):
    version = serializers.IntegerField(help_text="Label changes the learner reflects.")
    lag = serializers.IntegerField(help_text="Label changes it does not reflect yet.")
    n_labels = serializers.IntegerField()
    round = serializers.IntegerField()
    center_status = serializers.CharField()
    solver = serializers.CharField()
    seconds = serializers.FloatField(help_text="Time of the last update.")
    rebuilt = serializers.BooleanField()
    message = serializers.CharField()
    error = serializers.CharField()
    queue = serializers.ListField(
        child=serializers.IntegerField(), help_text="Item ids to serve next."
    )
    conflicts = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Groups of labeled item ids that no network can all fit.",
    )
    suspects = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Labeled item ids whose label the learner's centre gets wrong, most wrong "
        "first (sent to review).",
    )
    updated_at = serializers.DateTimeField()


class EstimateSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        choices=["evaluation", "cross-validated"],
        help_text="The evaluation set once it has enough labels, else cross-validation on "
        "the training labels.",
    )
    accuracy = serializers.FloatField()
    low = serializers.FloatField(help_text="Wilson 95 % interval, low.")
    high = serializers.FloatField(help_text="Wilson 95 % interval, high.")
    n = serializers.IntegerField()
    caption = serializers.CharField()


class StopEstimateSerializer(serializers.Serializer[Any]):
    stop = serializers.BooleanField(help_text="The stop rule says stop now.")
    labels_left = serializers.IntegerField(
        allow_null=True, help_text="Labels until it says stop (estimate; null: cannot tell)."
    )
    method = serializers.CharField(help_text="How it was decided and estimated.")


class MetricsSerializer(serializers.Serializer[Any]):
    n_items = serializers.IntegerField()
    n_done = serializers.IntegerField(help_text="Items with a label or a manager's decision.")
    n_labels = serializers.IntegerField()
    n_review = serializers.IntegerField()
    n_gold = serializers.IntegerField()
    stopped = serializers.BooleanField()
    stop_suggested = serializers.BooleanField(
        help_text="The stop rule says stop: the evaluation curve has flattened (once the "
        "evaluation set has enough labels), else the version space's disagreement fell below "
        "its threshold."
    )
    stop = StopEstimateSerializer()
    n_evaluation = serializers.IntegerField(help_text="Items in the reserved evaluation set.")
    estimate = EstimateSerializer(
        allow_null=True, help_text="The model's accuracy as honestly as it can be told now."
    )
    distribution = serializers.DictField(child=serializers.IntegerField())
    annotators = AnnotatorMetricsSerializer(many=True)
    agreement = AgreementSerializer()
    embedding = EmbeddingStatusSerializer(allow_null=True)
    learner = LearnerDiagnosticsSerializer(allow_null=True)
    curve = CurvePointSerializer(many=True)
    latest_model = serializers.IntegerField(allow_null=True, help_text="Newest finished version.")


class ItemRefSerializer(serializers.Serializer[Any]):
    item = serializers.IntegerField(min_value=1, max_value=ID_MAX)


class UndoInSerializer(serializers.Serializer[Any]):
    item = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        help_text="Undo only if the latest label is on this item (a repeated undo is safe).",
    )


class DecisionInSerializer(serializers.Serializer[Any]):
    item = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    value = serializers.CharField(max_length=200)


class DecisionOutSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    item = serializers.IntegerField()
    value = serializers.CharField()
    decided_by = serializers.CharField()
    created_at = serializers.DateTimeField()
