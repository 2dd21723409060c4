from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.static import serve

from evalsite import selectors
from evalsite.media_access import media_path_allowed
from evalsite.models import Experiment, Output

GRID_PAGE_SIZE = 24


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
    return render(
        request,
        "evalsite/experiment_detail.html",
        {
            "experiment": experiment,
            "sample_count": paginator.count,
            "has_ground_truth": samples.exclude(ground_truth="").exists(),
            "progress": selectors.experiment_progress(experiment),
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
    return JsonResponse(
        {
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
