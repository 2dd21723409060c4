from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from evalsite import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="experiment-list", permanent=False)),
    path("experiments/", views.experiment_list, name="experiment-list"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment-detail"),
    path("experiments/<int:pk>/progress.json", views.experiment_progress, name="experiment-progress"),
    path("experiments/<int:pk>/results.<str:fmt>", views.experiment_results_export, name="experiment-results-export"),
    path("experiments/<int:pk>/per-sample.csv", views.experiment_sample_scores_csv, name="experiment-sample-scores-csv"),
    path("experiments/<int:pk>/samples-by-score/", views.experiment_sample_scores, name="experiment-sample-scores"),
    path("outputs/<int:pk>/", views.output_detail, name="output-detail"),
    re_path(r"^media/(?P<path>.+)$", views.media, name="media"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # The studies app (it depends on evalsite, never the other way: only its URLs are named here).
    path("", include("studies.urls")),
]
