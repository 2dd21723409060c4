from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.static import serve

from evalsite import exports, results, selectors
from evalsite.media_access import media_path_allowed
from evalsite.models import ACTIVE_JOB_STATUSES, Experiment, Output
from evalsite.plots import results_plots

GRID_PAGE_SIZE = 24
SAMPLE_SCORES_PAGE_SIZE = 30
EXPORTS = {
    "csv": (exports.results_csv, "text/csv; charset=utf-8", "csv"),
    "latex": (exports.results_latex, "text/x-tex; charset=utf-8", "tex"),
    "json": (exports.results_json, "application/json", "json"),
}


@login_required
def experiment_list(request):
    return render(request, "evalsite/experiment_list.html", {"experiments": selectors.experiment_list()})


@login_required
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    seed = _seed_param(request, experiment)
    samples = experiment.dataset.samples.order_by("sample_id")
    paginator = Paginator(samples, GRID_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    columns, rows = selectors.experiment_grid(
        experiment, seed=seed, limit=GRID_PAGE_SIZE, offset=(page.number - 1) * GRID_PAGE_SIZE
    )
    table = results.experiment_results(experiment)
    metric_job = results.metric_job_latest(experiment)
    progress = selectors.experiment_progress(experiment)
    fine_tunes = selectors.experiment_fine_tunes(experiment, progress)
    return render(
        request,
        "evalsite/experiment_detail.html",
        {
            "experiment": experiment,
            "sample_count": paginator.count,
            "has_ground_truth": samples.exclude(ground_truth="").exists(),
            "progress": progress,
            "fine_tunes": fine_tunes,
            "fine_tunes_active": any(f.status in ACTIVE_JOB_STATUSES for f in fine_tunes),
            "metric_job": metric_job,
            "metrics_active": bool(metric_job and metric_job.status in ACTIVE_JOB_STATUSES),
            "results": table,
            "plots": results_plots(table) if table.has_scores else [],
            "columns": columns,
            "rows": rows,
            "seed": seed,
            "page": page,
            "seconds_per_image": selectors.experiment_seconds_per_image(experiment),
        },
    )


@login_required
def experiment_progress(request, pk: int):
    """Counts per method column, never a row per job: the page polls this."""
    experiment = get_object_or_404(Experiment, pk=pk)
    progress = selectors.experiment_progress(experiment)
    metric_job = results.metric_job_latest(experiment)
    return JsonResponse(
        {
            "metrics": None if metric_job is None else {
                "status": metric_job.status,
                "active": metric_job.status in ACTIVE_JOB_STATUSES,
                "stage": metric_job.stage,
                "done": metric_job.progress_done,
                "total": metric_job.progress_total,
                "error": metric_job.error,
            },
            "fine_tunes": [
                {"id": f.pk, "product": f.product_id, "status": f.status, "step": f.progress_done,
                 "steps": f.progress_total, "loss": f.last_loss, "error": f.error}
                for f in selectors.experiment_fine_tunes(experiment, progress)
            ],
            "expected": progress.expected,
            "done": progress.done,
            "percent": round(progress.percent, 1),
            "finished": progress.finished,
            "status": progress.status,
            "jobs_by_status": progress.jobs_by_status,
            "methods": [
                {
                    "key": c.key,
                    "done": c.done,
                    "expected": c.expected,
                    "jobs_by_status": c.jobs_by_status,
                    "failures": c.failures,
                }
                for c in progress.columns
            ],
        }
    )


@login_required
def experiment_results_export(request, pk: int, fmt: str):
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    try:
        render_table, content_type, extension = EXPORTS[fmt]
    except KeyError:
        raise Http404(f"no export format {fmt!r}; expected one of {', '.join(EXPORTS)}") from None
    response = HttpResponse(render_table(results.experiment_results(experiment)), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{_file_stem(experiment)}-results.{extension}"'
    return response


@login_required
def experiment_sample_scores_csv(request, pk: int):
    """Every per-sample value, streamed: a large experiment never times out."""
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    table = results.experiment_results(experiment)
    response = StreamingHttpResponse(
        exports.csv_lines(exports.sample_rows(table), exports.SAMPLE_COLUMNS), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_file_stem(experiment)}-per-sample.csv"'
    return response


@login_required
def experiment_sample_scores(request, pk: int):
    """One method's outputs by region CLIP score, worst first: the failures to look at."""
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    scope = results.scope_of(experiment)
    keys = [c.key for c in scope.columns]
    key = request.GET.get("method") or (keys[0] if keys else "")
    if key not in keys:
        raise Http404(f"no method {key!r} in this experiment; it has {', '.join(keys)}")
    page_number = _page_param(request)
    found = results.experiment_sample_scores(
        experiment, key, limit=SAMPLE_SCORES_PAGE_SIZE, offset=(page_number - 1) * SAMPLE_SCORES_PAGE_SIZE, scope=scope
    )
    rows, total = found
    pages = max(1, -(-total // SAMPLE_SCORES_PAGE_SIZE))
    return render(request, "evalsite/sample_scores.html", {
        "experiment": experiment, "key": key, "keys": keys, "rows": rows, "total": total,
        "page_number": page_number, "pages": pages, "offset": (page_number - 1) * SAMPLE_SCORES_PAGE_SIZE,
    })


@login_required
def output_detail(request, pk: int):
    try:
        output = selectors.output_detail(pk)
    except Output.DoesNotExist:
        raise Http404(f"no output {pk}") from None
    return render(
        request,
        "evalsite/output_detail.html",
        {"output": output, "columns": selectors.output_columns(output)},
    )


@login_required
def media(request, path: str):
    """Media behind login, for researchers: dataset images and outputs, never temp files
    or anything outside MEDIA_ROOT (serve() refuses paths that leave it). Raters are not
    users; they will get their images through their study's own URLs."""
    if not media_path_allowed(request.user, path):
        raise Http404("no such file")
    return serve(request, path, document_root=settings.MEDIA_ROOT)


def _file_stem(experiment) -> str:
    return f"experiment-{experiment.pk}"


def _page_param(request) -> int:
    try:
        return max(1, int(request.GET.get("page", 1)))
    except ValueError:
        raise Http404("page must be a number") from None


def _seed_param(request, experiment) -> int:
    raw = request.GET.get("seed")
    if raw is None:
        return experiment.seeds[0]
    try:
        seed = int(raw)
    except ValueError:
        raise Http404(f"seed {raw!r} is not a number") from None
    if seed not in experiment.seeds:
        raise Http404(f"seed {seed} is not one of this experiment's seeds {experiment.seeds}")
    return seed
