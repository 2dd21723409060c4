"""The rater's pages: entry link -> consent -> trials -> completion. Raters are not Django
users: a pseudonymous Rater bound to the entry link and a signed cookie, scoped to the
study's path. Nothing served here names a method or a sample: images come through
per-trial tokens, and candidates are labelled by slot only."""
from __future__ import annotations

from functools import wraps
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.files.storage import default_storage
from django.core.signing import BadSignature
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods

from studies import services
from studies.assignment import AnswerError, answer_parse, slot_label, trial_answer, trial_current
from studies.models import Rater, ResponseMode, Study, StudyState, Trial, TrialImage, TrialStatus

COOKIE = "evalsite_rater"
COOKIE_MAX_AGE = 60 * 60 * 24 * 30
# MTurk shows ExternalQuestion pages in an iframe on its own hosts; nobody else may frame them.
FRAME_ANCESTORS = "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com"


def rater_page(view):
    """Framable by MTurk only, never cached, and no referrer sent to other sites. Not
    `no-referrer`: under it browsers send `Origin: null` with the page's own form posts,
    which Django's CSRF check refuses (no rater could consent). The images ask for theirs
    with referrerpolicy="no-referrer" (rater_trial.html)."""
    @xframe_options_exempt
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = FRAME_ANCESTORS
        response["Referrer-Policy"] = "same-origin"
        response.setdefault("Cache-Control", "no-store")
        return response
    return wrapped


def _see_other(url: str) -> HttpResponseRedirect:
    """303: after a POST the browser GETs the next page (a reload never re-posts)."""
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _study(token: str) -> Study:
    return get_object_or_404(Study, token=token)


def _salt(study: Study) -> str:
    return f"studies.rater.{study.token}"


def _cookie_rater(request, study: Study) -> Rater | None:
    try:
        value = request.get_signed_cookie(COOKIE, salt=_salt(study), max_age=COOKIE_MAX_AGE)
    except (KeyError, BadSignature):
        return None
    rater = Rater.objects.filter(study=study, token=value).first()
    if rater is not None:
        rater.study = study  # loaded already: no second read of the study on every request
    return rater


def _set_cookie(response, request, study: Study, rater: Rater) -> None:
    # Inside MTurk's iframe the page is third-party: the cookie must be SameSite=None,
    # which browsers accept over HTTPS only. On plain HTTP (a laptop, the demo) Lax works.
    secure = request.is_secure()
    response.set_signed_cookie(
        COOKIE, rater.token, salt=_salt(study), max_age=COOKIE_MAX_AGE, path=f"/r/{study.token}/",
        httponly=True, secure=secure, samesite="None" if secure else "Lax",
    )


def _closed(request, study: Study):
    return render(request, "studies/rater_closed.html", {"study": study}, status=200)


@rater_page
@require_GET
def entry(request, token: str):
    study = _study(token)
    entry_ = services.Entry.from_query(request.GET)
    if entry_.preview:
        return render(request, "studies/rater_preview.html", {"study": study, "criteria": study.criteria.all()})
    if study.state != StudyState.LIVE:
        return _closed(request, study)
    rater = services.rater_enter(study=study, entry=entry_, cookie_rater=_cookie_rater(request, study))
    target = "studies:rater-trial" if rater.consented_at else "studies:rater-consent"
    # `entered` tells the next page that the cookie was just set: if it is missing there,
    # the browser refuses it (third-party cookies in MTurk's iframe), and looping back here
    # would never end.
    # The platform's parameters travel along, so that the page can offer to start over in
    # a new tab as the same rater.
    query = request.GET.copy()
    query["entered"] = "1"
    response = redirect(f"{reverse(target, args=[study.token])}?{query.urlencode()}")
    _set_cookie(response, request, study, rater)
    return response


def _rater_or_entry(request, study: Study):
    rater = _cookie_rater(request, study)
    if rater is None:
        if request.GET.get("entered"):
            query = request.GET.copy()
            query.pop("entered")
            entry_url = reverse("studies:rater-entry", args=[study.token])
            return None, render(request, "studies/rater_no_cookie.html", {
                "study": study, "entry": f"{entry_url}?{query.urlencode()}" if query else entry_url})
        return None, redirect(reverse("studies:rater-entry", args=[study.token]))
    return rater, None


@rater_page
@require_http_methods(["GET", "POST"])
def consent(request, token: str):
    study = _study(token)
    rater, elsewhere = _rater_or_entry(request, study)
    if elsewhere:
        return elsewhere
    if study.state != StudyState.LIVE and not rater.consented_at:
        return _closed(request, study)
    if request.method == "POST":
        services.rater_consent(rater=rater)
        return _see_other(reverse("studies:rater-trial", args=[study.token]))
    return render(request, "studies/rater_consent.html", {"study": study, "criteria": study.criteria.all()})


@rater_page
@require_http_methods(["GET", "POST"])
def trial(request, token: str):
    study = _study(token)
    rater, elsewhere = _rater_or_entry(request, study)
    if elsewhere:
        return elsewhere
    if rater.consented_at is None:
        return redirect(reverse("studies:rater-consent", args=[study.token]))
    if request.method == "POST":
        return _answer(request, study, rater)
    if study.state != StudyState.LIVE:
        if study.state == StudyState.CLOSED and services.rater_finish(rater=rater):
            return redirect(reverse("studies:rater-done", args=[study.token]))  # closed on them: paid for what they did
        return _closed(request, study)
    current = trial_current(rater=rater)
    if current is None:
        if services.rater_finish(rater=rater):
            return redirect(reverse("studies:rater-done", args=[study.token]))
        return render(request, "studies/rater_no_work.html", {"study": study})
    services.trial_shown(trial=current)
    return _render_trial(request, study, rater, current)


def _answer(request, study: Study, rater: Rater):
    next_page = _see_other(reverse("studies:rater-trial", args=[study.token]))
    trial_ = Trial.objects.filter(rater=rater, token=request.POST.get("trial", "")).first()
    if trial_ is None:
        raise Http404("No such trial for this rater")
    if trial_.status != TrialStatus.ASSIGNED or study.state == StudyState.CLOSED:
        return next_page  # answered already (double click, retry) or timed out: show what is next
    criteria = list(study.criteria.all())
    try:
        answer = answer_parse(study=study, criteria=criteria, slots=len(trial_.slot_order), data=request.POST)
    except AnswerError as exc:
        return _render_trial(request, study, rater, trial_, error=str(exc), status=400)
    trial_answer(trial=trial_, answer=answer)
    return next_page


def _render_trial(request, study: Study, rater: Rater, trial_: Trial, *, error: str = "", status: int = 200):
    created = getattr(trial_, "created_images", None)
    images = {(image.role, image.slot): image.token for image in (created or trial_.images.all())}
    url = lambda role, slot=None: reverse("studies:rater-image", args=[study.token, images[(role, slot)]])  # noqa: E731
    criteria = list(study.criteria.all())
    slots = len(trial_.slot_order)
    top = 5 if study.response_mode == ResponseMode.SCORE else slots
    candidates = [
        {"label": slot_label(slot), "image": url(TrialImage.Role.CANDIDATE, slot),
         "rows": [{"name": f"s{slot}-{c.key}", "criterion": c, "value": request.POST.get(f"s{slot}-{c.key}", "")}
                  for c in criteria]}
        for slot in range(slots)
    ]
    answered = trial_.position  # an open trial's number is the count answered before it
    return render(request, "studies/rater_trial.html", {
        "study": study, "trial": trial_, "criteria": criteria, "candidates": candidates,
        "choices": list(range(1, top + 1)), "rank": study.response_mode == ResponseMode.RANK,
        "scene": url(TrialImage.Role.SCENE), "scene_outlined": url(TrialImage.Role.SCENE_OUTLINED),
        "reference": url(TrialImage.Role.REFERENCE), "number": answered + 1, "total": study.trials_per_rater,
        "percent": round(100 * answered / study.trials_per_rater), "error": error,
    }, status=status)


@rater_page
@require_GET
def done(request, token: str):
    study = _study(token)
    rater, elsewhere = _rater_or_entry(request, study)
    if elsewhere:
        return elsewhere
    if not services.rater_finish(rater=rater):
        return redirect(reverse("studies:rater-trial", args=[study.token]))
    completion_url = _with_completion_code(study.completion_url, study.completion_code) if study.completion_url else ""
    mturk_submit = (f"{rater.turk_submit_to.rstrip('/')}/mturk/externalSubmit"
                    if rater.platform == Rater.Platform.MTURK and rater.turk_submit_to else "")
    return render(request, "studies/rater_done.html", {
        "study": study, "rater": rater, "completion_url": completion_url, "mturk_submit": mturk_submit,
    })


def _with_completion_code(url: str, code: str) -> str:
    """Prolific's completion URL with `cc=<code>`, unless it carries a cc of its own."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key == "cc" for key, _ in query):
        query.append(("cc", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


@rater_page
@require_GET
def declined(request, token: str):
    return render(request, "studies/rater_declined.html", {"study": _study(token)})


@require_GET
def image(request, token: str, image_token: str):
    """An image of one of this rater's trials, as bytes with no name: no file name, date
    or length beyond the bytes themselves reaches the browser."""
    study = _study(token)
    rater = _cookie_rater(request, study)
    found = TrialImage.objects.filter(token=image_token, trial__rater=rater).values_list("path", flat=True).first() \
        if rater is not None else None
    if found is None:
        raise Http404("No such image for this rater")
    with default_storage.open(found, "rb") as handle:
        data = handle.read()
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    response["Referrer-Policy"] = "no-referrer"
    return response
