"""A campaign's webhooks through the API (managers only; docs/platform.md, "Webhooks"):
list, create (the secret is in the create answer only), read, update, delete; a webhook's
delivery log, redelivering one, and a ping."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import permissions
from labeling.api.pagination import StrictLimitOffsetPagination
from labeling.models import Campaign, Webhook, WebhookDelivery
from labeling.webhooks import delivery, subscriptions


class WebhookSerializer(serializers.ModelSerializer[Webhook]):
    url = serializers.URLField(
        max_length=subscriptions.URL_MAX_LENGTH,
        help_text="Called by a worker with a signed POST for each event; http or https only, "
        "redirects are not followed.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=subscriptions.EVENTS),
        min_length=1,
        help_text="The events to send: " + ", ".join(subscriptions.EVENTS) + ".",
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "active", "created_by", "created_at"]
        read_only_fields = ["id", "created_by", "created_at"]

    def validate_url(self, value: str) -> str:
        problem = subscriptions.url_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        return subscriptions.ordered(value)


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (hex). Shown in this answer only: store it now.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookSerializer.Meta.read_only_fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "response_status",
            "error",
            "payload",
            "created_at",
            "sent_at",
            "delivered_at",
            "next_attempt_at",
        ]
        read_only_fields = fields


CAMPAIGN = OpenApiParameter("campaign_pk", int, OpenApiParameter.PATH, description="Campaign id")
DELIVERY = OpenApiParameter("delivery_pk", int, OpenApiParameter.PATH, description="Delivery id")


@extend_schema(parameters=[CAMPAIGN], tags=["webhooks"])
@extend_schema_view(
    create=extend_schema(request=WebhookSerializer, responses={201: WebhookCreatedSerializer}),
)
class WebhookViewSet(viewsets.ModelViewSet[Webhook]):
    """The campaign's webhooks (its managers only: others get 403, or 404 for a campaign they
    cannot see)."""

    serializer_class = WebhookSerializer
    lookup_value_regex = r"\d{1,19}"  # (int() refuses over 4,300 digits: a 404, not a 500)

    def campaign(self) -> Campaign:
        return permissions.get_campaign(
            self.request.user, int(self.kwargs["campaign_pk"]), manage=True
        )

    def get_queryset(self) -> QuerySet[Webhook]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator
            return Webhook.objects.none()
        return Webhook.objects.filter(campaign=self.campaign()).select_related("created_by")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        campaign = self.campaign()  # permission first, then validation
        body = WebhookSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        hook = subscriptions.create(
            campaign, body.validated_data["url"], body.validated_data["events"], request.user
        )
        if body.validated_data.get("active") is False:
            Webhook.objects.filter(pk=hook.pk).update(active=False)
            hook.active = False
        return Response(WebhookCreatedSerializer(hook).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, campaign_pk: Any = None, pk: Any = None) -> Response:
        """The webhook's deliveries, newest first (the delivery log)."""
        hook = self.get_object()
        rows = hook.deliveries.order_by("-created_at", "-pk")
        pages = StrictLimitOffsetPagination()
        page = pages.paginate_queryset(rows, request, view=self)
        if page is None:  # (the paginator always pages; for the type checker)
            return Response(DeliverySerializer(rows, many=True).data)
        return pages.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: DeliverySerializer}, parameters=[DELIVERY])
    @action(
        detail=True,
        methods=["post"],
        url_path=r"deliveries/(?P<delivery_pk>\d{1,19})/redeliver",
        url_name="redeliver",
    )
    def redeliver(
        self, request: Request, campaign_pk: Any = None, pk: Any = None, delivery_pk: Any = None
    ) -> Response:
        """Send a delivery's event again, as a new delivery (the original stays as it was)."""
        hook = self.get_object()
        original = hook.deliveries.filter(pk=int(delivery_pk)).first()
        if original is None:
            raise NotFound("No such delivery of this webhook.")
        again = delivery.redeliver(original)
        return Response(DeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, campaign_pk: Any = None, pk: Any = None) -> Response:
        """Send a ``ping`` event now, to check the URL and the signature check."""
        again = delivery.ping(self.get_object())
        return Response(DeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)
