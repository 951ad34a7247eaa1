"""Near-duplicate pairs through the API (docs/platform.md, "Near-duplicates"): list them,
merge them or keep both items. Managers only, as on the page."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import items_page, near_duplicates
from labeling.api.base import CampaignRoutes
from labeling.models import Item, Label, NearDuplicate

#: Pairs one merge or keep may name.
MAX_IDS = 1000
STATUSES = [s.value for s in NearDuplicate.Status]


class PairItemSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    text = serializers.CharField()
    gold = serializers.CharField()
    labels = serializers.DictField(
        child=serializers.CharField(), help_text="Active labels: annotator username -> label."
    )


class NearDuplicatePairSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    similarity = serializers.FloatField(help_text="Cosine similarity of the two embeddings.")
    status = serializers.CharField(help_text="open or kept (merged pairs are gone).")
    created_at = serializers.DateTimeField()
    item = PairItemSerializer(help_text="The later item: deleted by a merge.")
    duplicate_of = PairItemSerializer(help_text="The earlier item: kept by a merge.")


class PairIdsSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=MAX_IDS,
        help_text="Ids of the campaign's open pairs.",
    )


class MergeResultSerializer(serializers.Serializer[Any]):
    merged = serializers.IntegerField(help_text="Pairs merged (their later items deleted).")
    labels_moved = serializers.IntegerField(help_text="Labels moved to the items kept.")
    labels_withdrawn = serializers.IntegerField(
        help_text="Labels moved as withdrawn history: their annotator had labeled the item "
        "kept already."
    )
    decisions_moved = serializers.IntegerField()
    decisions_dropped = serializers.IntegerField()
    not_open = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids that were not open pairs: untouched."
    )
    detail = serializers.CharField()


class KeepResultSerializer(serializers.Serializer[Any]):
    kept = serializers.IntegerField()
    not_open = serializers.ListField(child=serializers.IntegerField())


def _item(item: Item, labels: list[Label]) -> dict[str, Any]:
    return {
        "id": item.pk,
        "position": item.position,
        "text": item.text,
        "gold": item.gold,
        "labels": {label.annotator.get_username(): label.value for label in labels},
    }


def _ids(request: Request) -> list[int]:
    body = PairIdsSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return list(body.validated_data["ids"])


class NearDuplicateActions(CampaignRoutes):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", str, enum=STATUSES, required=False, description="Default: open."
            )
        ],
        responses=NearDuplicatePairSerializer(many=True),
    )
    @action(detail=True, methods=["get"], url_path="near-duplicates")
    def near_duplicates(self, request: Request, pk: Any = None) -> Response:
        """The campaign's near-duplicate pairs (managers), most similar first, with both
        items' texts and active labels; ``status`` open (default) or kept. Merged pairs
        are gone with their later item."""
        campaign = self._campaign(pk, manage=True)
        wanted = request.query_params.get("status", NearDuplicate.Status.OPEN)
        if wanted not in STATUSES:
            raise ValidationError({"status": f"Use one of {', '.join(STATUSES)}."})
        pairs = NearDuplicate.objects.filter(campaign=campaign, status=wanted).select_related(
            "item", "duplicate_of"
        )
        page = self.paginate_queryset(pairs)
        views = near_duplicates.with_labels(list(page if page is not None else pairs))
        rows = [
            {
                "id": v.pair.pk,
                "similarity": v.pair.similarity,
                "status": v.pair.status,
                "created_at": v.pair.created_at,
                "item": _item(v.pair.item, v.item_labels),
                "duplicate_of": _item(v.pair.duplicate_of, v.duplicate_labels),
            }
            for v in views
        ]
        data = NearDuplicatePairSerializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(
        request=PairIdsSerializer,
        responses={
            200: MergeResultSerializer,
            409: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="An embedding job of the campaign is queued or running; nothing "
                "was merged. Try again once it has finished.",
            ),
        },
    )
    @action(detail=True, methods=["post"], url_path="near-duplicates/merge")
    def merge_near_duplicates(self, request: Request, pk: Any = None) -> Response:
        """Merge open pairs (managers): keep each earlier item, move the later item's labels
        to it where that annotator has not labeled it (the others move as withdrawn labels, and
        are counted),
        then delete the later item. All or nothing."""
        campaign = self._campaign(pk, manage=True)
        ids = _ids(request)
        try:
            merged = near_duplicates.merge(campaign, ids)
        except items_page.EmbeddingBusy as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        body = {
            "merged": merged.pairs,
            "labels_moved": merged.labels_moved,
            "labels_withdrawn": merged.labels_withdrawn,
            "decisions_moved": merged.decisions_moved,
            "decisions_dropped": merged.decisions_dropped,
            "not_open": merged.not_open,
            "detail": merged.describe(),
        }
        return Response(MergeResultSerializer(body).data)

    @extend_schema(request=PairIdsSerializer, responses=KeepResultSerializer)
    @action(detail=True, methods=["post"], url_path="near-duplicates/keep")
    def keep_near_duplicates(self, request: Request, pk: Any = None) -> Response:
        """Keep both items of open pairs (managers): the pairs become ``kept``."""
        campaign = self._campaign(pk, manage=True)
        kept, not_open = near_duplicates.keep(campaign, _ids(request))
        return Response(KeepResultSerializer({"kept": kept, "not_open": not_open}).data)
