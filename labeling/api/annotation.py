"""Serving and labeling through the API: next item, label, skip, undo, a manager's decision."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import annotation, campaign_learner, permissions, review
from labeling.api.base import CampaignRoutes
from labeling.api.serializers import (
    DecisionInSerializer,
    DecisionOutSerializer,
    ItemRefSerializer,
    LabelInSerializer,
    LabelOutSerializer,
    NextItemSerializer,
    UndoInSerializer,
)
from labeling.models import Assignment, Campaign, Label


def _label_body(label: Label, *, created: bool) -> dict[str, Any]:
    """A label as LabelOutSerializer shows it (``created`` False: a repeat or an undo)."""
    return {
        "id": label.pk,
        "item": label.item_id,
        "value": label.value,
        "comment": label.comment,
        "created": created,
    }


class AnnotationActions(CampaignRoutes):
    @extend_schema(
        request=None,
        responses={
            200: NextItemSerializer,
            204: OpenApiResponse(description="Nothing to label right now."),
        },
    )
    @action(detail=True, methods=["post"])
    def next(self, request: Request, pk: Any = None) -> Response:
        """Lease the caller's next item (the same leasing as the labeling page)."""
        campaign = self._campaign(pk)
        campaign_learner.nudge(campaign)  # a learner update lost with the broker: sent again
        served = annotation.next_assignment(campaign, request.user)
        if served is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            {"id": served.item_id, "text": served.item.text, "lease_expires_at": served.expires_at}
        )

    @extend_schema(
        request=LabelInSerializer, responses={201: LabelOutSerializer, 200: LabelOutSerializer}
    )
    @action(detail=True, methods=["post"])
    def labels(self, request: Request, pk: Any = None) -> Response:
        """Label an item the caller was served. Repeating a submission returns the first label
        (200); a label outside the label set, or for an item not served to the caller or
        skipped by them, is a 400."""
        campaign = self._campaign(pk)
        data = LabelInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        served = self._served(campaign, data.validated_data["item"])
        if served.state == Assignment.State.SKIPPED:
            raise ValidationError({"item": "You skipped this item."})
        if data.validated_data["value"] not in campaign.labels:
            raise ValidationError({"value": f"Choose one of: {', '.join(campaign.labels)}."})
        out = annotation.submit_label(
            served.item,
            request.user,
            data.validated_data["value"],
            data.validated_data.get("comment", ""),
        )
        body = _label_body(out.label, created=out.created)
        return Response(body, status=status.HTTP_201_CREATED if out.created else status.HTTP_200_OK)

    def _served(self, campaign: Campaign, item_id: int) -> Assignment:
        served = (
            Assignment.objects.filter(
                item_id=item_id,
                item__campaign=campaign,
                annotator=permissions.signed_in(self.request.user),
            )
            .select_related("item")
            .first()
        )
        if served is None:
            raise ValidationError({"item": "This item was not served to you."})
        return served

    @extend_schema(
        request=ItemRefSerializer,
        responses={204: OpenApiResponse(description="Skipped (or already labeled: unchanged).")},
    )
    @action(detail=True, methods=["post"])
    def skip(self, request: Request, pk: Any = None) -> Response:
        """Set an item the caller was served aside (others may still get it)."""
        campaign = self._campaign(pk)
        body = ItemRefSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        annotation.skip(self._served(campaign, body.validated_data["item"]).item, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=UndoInSerializer,
        responses={
            200: LabelOutSerializer,
            204: OpenApiResponse(description="Nothing to undo."),
        },
    )
    @action(detail=True, methods=["post"])
    def undo(self, request: Request, pk: Any = None) -> Response:
        """Withdraw the caller's latest label (kept, marked undone) and lease its item back."""
        campaign = self._campaign(pk)
        body = UndoInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        label = annotation.undo_last(campaign, request.user, body.validated_data.get("item"))
        if label is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_label_body(label, created=False))

    @extend_schema(request=DecisionInSerializer, responses={201: DecisionOutSerializer})
    @action(detail=True, methods=["post"])
    def decisions(self, request: Request, pk: Any = None) -> Response:
        """A manager's verdict on an item (typically one in review): it overrides the
        annotators' labels in training; their labels stay."""
        campaign = self._campaign(pk, manage=True)
        body = DecisionInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = campaign.items.filter(pk=body.validated_data["item"]).first()
        if item is None:
            raise ValidationError({"item": "No such item in this campaign."})
        value = body.validated_data["value"]
        if value not in campaign.labels:
            raise ValidationError({"value": f"Choose one of: {', '.join(campaign.labels)}."})
        decision = review.decide(item, request.user, value)
        out = {
            "id": decision.pk,
            "item": item.pk,
            "value": decision.value,
            "decided_by": request.user.get_username(),
            "created_at": decision.created_at,
        }
        return Response(DecisionOutSerializer(out).data, status=status.HTTP_201_CREATED)
