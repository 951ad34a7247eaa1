"""Root URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from labeling import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("labeling.urls")),
]
