from __future__ import annotations

from rest_framework.routers import DefaultRouter

from labeling.api.views import CampaignViewSet

router = DefaultRouter()
router.register("campaigns", CampaignViewSet, basename="api-campaign")
urlpatterns = router.urls
