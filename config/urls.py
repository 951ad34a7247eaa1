"""Root URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from labeling import views
from labeling.signin import AdminSignInForm, SignInForm

# Sign-in pages that stop password guessing (labeling.signin).
admin.site.login_form = AdminSignInForm

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("labeling.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("labeling.urls")),
]

# A URL under /api/ that no route matches answers JSON like the API's own 404s.
handler404 = "labeling.api.parsing.not_found"
