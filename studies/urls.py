from django.urls import path

from studies import rater_views, researcher_views

app_name = "studies"

urlpatterns = [
    path("studies/", researcher_views.study_list, name="list"),
    path("studies/new/<int:experiment_pk>/", researcher_views.study_new, name="new"),
    path("studies/<int:pk>/", researcher_views.study_detail, name="detail"),
    path("studies/<int:pk>/progress.json", researcher_views.study_progress, name="progress"),
    path("studies/<int:pk>/state/", researcher_views.study_state, name="state"),
    path("studies/<int:pk>/<str:what>.csv", researcher_views.study_export, name="export"),
    # Rater pages: /r/<the study's opaque token>/...
    path("r/<str:token>/", rater_views.entry, name="rater-entry"),
    path("r/<str:token>/consent/", rater_views.consent, name="rater-consent"),
    path("r/<str:token>/declined/", rater_views.declined, name="rater-declined"),
    path("r/<str:token>/rate/", rater_views.trial, name="rater-trial"),
    path("r/<str:token>/done/", rater_views.done, name="rater-done"),
    path("r/<str:token>/i/<str:image_token>", rater_views.image, name="rater-image"),
]
