from __future__ import annotations

from django.urls import path

from labeling import export_views, items_views, near_duplicates_views, views
from labeling.webhooks import views as webhook_views

urlpatterns = [
    path("", views.campaign_list, name="campaign-list"),
    path("campaigns/new/", views.campaign_create, name="campaign-create"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="campaign-detail"),
    path("campaigns/<int:pk>/edit/", views.campaign_edit, name="campaign-edit"),
    path("campaigns/<int:pk>/upload/", views.campaign_upload, name="campaign-upload"),
    path("campaigns/<int:pk>/embed/", views.embedding_retry, name="campaign-embed"),
    path("campaigns/<int:pk>/label/", views.label, name="campaign-label"),
    path("campaigns/<int:pk>/review/", views.review, name="campaign-review"),
    path("campaigns/<int:pk>/items/", items_views.items, name="campaign-items"),
    path("campaigns/<int:pk>/items/<int:item_pk>/", items_views.item_detail, name="campaign-item"),
    path(
        "campaigns/<int:pk>/near-duplicates/",
        near_duplicates_views.near_duplicates_page,
        name="campaign-near-duplicates",
    ),
    path("campaigns/<int:pk>/dashboard/", views.campaign_dashboard, name="campaign-dashboard"),
    path("campaigns/<int:pk>/export/", export_views.campaign_export, name="campaign-export"),
    path("campaigns/<int:pk>/stop/", views.campaign_stop, name="campaign-stop"),
    path("campaigns/<int:pk>/retrain/", views.campaign_retrain, name="campaign-retrain"),
    path("campaigns/<int:pk>/webhooks/", webhook_views.webhooks, name="campaign-webhooks"),
    path("account/tokens/", views.api_tokens, name="api-tokens"),
]
