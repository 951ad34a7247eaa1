from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from labeling.forms import check_labels_in_use
from labeling.models import CAMPAIGN_SETTINGS, Campaign, validate_label_set


class CampaignSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    labels = serializers.ListField(
        child=serializers.CharField(max_length=200), min_length=2, max_length=20, required=False
    )
    annotators = serializers.SlugRelatedField(
        many=True,
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    n_items = serializers.IntegerField(read_only=True)

    class Meta:
        model = Campaign
        fields = ["id", "labels", *CAMPAIGN_SETTINGS, "created_by", "created_at", "n_items"]
        read_only_fields = ["id", "created_by", "created_at", "n_items"]

    def validate_labels(self, value: list[str]) -> list[str]:
        labels = [v.strip() for v in value]
        try:
            validate_label_set(labels)
            if self.instance is not None:
                check_labels_in_use(self.instance, labels)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return labels

    def to_representation(self, instance: Campaign) -> dict[str, Any]:
        data = super().to_representation(instance)
        if data.get("n_items") is None:
            data["n_items"] = instance.items.count()
        return data


class ItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    metadata = serializers.DictField()
    labels = serializers.ListField(child=serializers.CharField(), help_text="Active labels.")
    gold = serializers.CharField(required=False, help_text="Managers only.")


class NextItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    text = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()


class LabelInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    item = serializers.IntegerField(min_value=1)
    value = serializers.CharField(max_length=200)
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class LabelOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    item = serializers.IntegerField()
    value = serializers.CharField()
    comment = serializers.CharField()
    created = serializers.BooleanField(help_text="False: a repeated submission; the first stands.")


class ModelVersionSerializer(serializers.Serializer):  # type: ignore[type-arg]
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


class PredictInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    texts = serializers.ListField(child=serializers.JSONField(), allow_empty=True)


class PredictionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    label = serializers.CharField()
    scores = serializers.DictField(child=serializers.FloatField())


class PredictOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model_version = serializers.IntegerField()
    predictions = PredictionSerializer(many=True)
