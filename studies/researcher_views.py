"""Researcher pages: the study list, the creation form, a study's progress and results,
its state, and the CSV downloads. All behind the login."""
from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib import messages
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from evalsite.models import Experiment
from studies import exports, selectors, services
from studies.forms import StudyForm
from studies.models import Study, StudyState
from studies.results import joined_table, study_results

PROLIFIC_QUERY = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


@login_required
def study_list(request):
    return render(request, "studies/study_list.html", {
        "studies": selectors.study_list(), "experiments": Experiment.objects.order_by("name"),
    })


@login_required
def study_new(request, experiment_pk: int):
    experiment = get_object_or_404(Experiment, pk=experiment_pk)
    form = StudyForm(request.POST or None, experiment=experiment)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            study = services.study_create(
                name=data["name"], experiment=experiment, method_keys=data["methods"], items=form.item_choice(),
                seed=data["seed"], criteria=data["criteria"], response_mode=data["response_mode"],
                layout=data["layout"], ratings_per_pair=data["ratings_per_pair"],
                trials_per_rater=data["trials_per_rater"], attention_checks=data["attention_checks"],
                max_attention_failures=data["max_attention_failures"],
                min_median_seconds=data["min_median_seconds"], instructions=data["instructions"],
                consent_text=data["consent_text"], completion_code=data["completion_code"],
                completion_url=data["completion_url"], user=request.user, live=data["live"],
            )
        except (services.StudyError, forms.ValidationError) as exc:
            form.add_error(None, exc.message if isinstance(exc, forms.ValidationError) else str(exc))
        else:
            return redirect("studies:detail", pk=study.pk)
    return render(request, "studies/study_new.html", {"form": form, "experiment": experiment},
                  status=400 if form.errors else 200)


def rater_link(request, study: Study) -> str:
    return request.build_absolute_uri(reverse("studies:rater-entry", args=[study.token]))


@login_required
def study_detail(request, pk: int):
    study = get_object_or_404(Study.objects.select_related("experiment"), pk=pk)
    results = study_results(study)
    link = rater_link(request, study)
    return render(request, "studies/study_detail.html", {
        "study": study, "progress": selectors.study_progress(study), "results": results,
        "joined": joined_table(results), "link": link, "prolific_link": f"{link}?{PROLIFIC_QUERY}",
        "states": [s for s in services.ALLOWED_TRANSITIONS[StudyState(study.state)]],
        "raters": sorted(results.quality.values(), key=lambda q: (not q.excluded, q.pseudonym)),
    })


@login_required
def study_progress(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    progress = selectors.study_progress(study)
    return JsonResponse({
        "state": study.state, "answered": progress.answered, "in_progress": progress.in_progress,
        "wanted": progress.total_wanted, "percent": round(progress.percent, 1),
        "raters_started": progress.raters_started, "raters_finished": progress.raters_finished,
        "items": [{"sample": s, "answered": a, "in_progress": p} for s, a, p in progress.rows],
    })


@login_required
@require_POST
def study_state(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    try:
        services.study_state_set(study=study, state=request.POST.get("state", ""))
    except services.StudyError as exc:
        messages.error(request, str(exc))
    return redirect("studies:detail", pk=study.pk)


@login_required
def study_export(request, pk: int, what: str):
    study = get_object_or_404(Study, pk=pk)
    lines = exports.EXPORTS.get(what)
    if lines is None:
        raise Http404(f"No export {what!r}; there are {', '.join(exports.EXPORTS)}")
    response = StreamingHttpResponse(lines(study), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{exports.export_filename(study, what)}"'
    return response
