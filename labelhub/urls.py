from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from labelhub.api import ObtainTokenView, not_found, schema_view, server_error

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The one-time link a lead hands a new member (annotation.services.team.set_password_path).
    path(
        "accounts/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="registration/set_password.html", success_url="/accounts/login/"
        ),
        name="set_password",
    ),
    path("django-admin/", admin.site.urls),
    # Logged-in users only (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]).
    path("api/schema/", schema_view, name="schema"),
    path("api/auth/token/", ObtainTokenView.as_view(), name="api_token"),
    path("", include("annotation.urls")),
    path("", include("scoring.urls")),
    path("", include("training.urls")),
]

handler404 = not_found
handler500 = server_error
