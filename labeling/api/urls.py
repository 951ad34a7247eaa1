from __future__ import annotations

from rest_framework.routers import DefaultRouter

from labeling.api.views import CampaignViewSet
from labeling.api.webhooks import WebhookViewSet

router = DefaultRouter()
router.register("campaigns", CampaignViewSet, basename="api-campaign")
router.register(
    r"campaigns/(?P<campaign_pk>\d{1,19})/webhooks", WebhookViewSet, basename="api-webhook"
)
urlpatterns = router.urls
