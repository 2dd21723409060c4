from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.static import serve

from evalsite import selectors
from evalsite.models import Experiment

GRID_PAGE_SIZE = 24


@login_required
def experiment_list(request):
    return render(request, "evalsite/experiment_list.html", {"experiments": selectors.experiment_list()})


@login_required
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(Experiment.objects.select_related("dataset"), pk=pk)
    seed = _seed_param(request, experiment)
    paginator = Paginator(experiment.dataset.samples.order_by("sample_id"), GRID_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    methods, rows = selectors.experiment_grid(
        experiment, seed=seed, limit=GRID_PAGE_SIZE, offset=(page.number - 1) * GRID_PAGE_SIZE
    )
    return render(
        request,
        "evalsite/experiment_detail.html",
        {
            "experiment": experiment,
            "progress": selectors.experiment_progress(experiment),
            "jobs": selectors.experiment_jobs(experiment),
            "methods": methods,
            "rows": rows,
            "seed": seed,
            "page": page,
            "seconds_per_image": selectors.experiment_seconds_per_image(experiment),
        },
    )


@login_required
def experiment_progress(request, pk: int):
    experiment = get_object_or_404(Experiment, pk=pk)
    progress = selectors.experiment_progress(experiment)
    jobs = [
        {
            "id": job.pk,
            "method": job.method.key,
            "seed": job.seed,
            "status": job.status,
            "done": job.progress_done,
            "total": job.progress_total,
            "attempts": job.attempts,
            "error": job.error,
        }
        for job in selectors.experiment_jobs(experiment)
    ]
    return JsonResponse(
        {
            "expected": progress.expected,
            "done": progress.done,
            "percent": round(progress.percent, 1),
            "finished": progress.finished,
            "jobs_by_status": progress.jobs_by_status,
            "jobs": jobs,
        }
    )


@login_required
def media(request, path: str):
    """Media behind login (unpublished research images). Production may serve MEDIA_ROOT
    from object storage or a web server with its own access control instead."""
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
