"""Writes of the studies app: creating a study, its states, raters entering and consenting.
Assignment and answers are in assignment.py."""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from evalsite.models import Experiment, Output
from evalsite.selectors import experiment_columns
from studies import images
from studies.assignment import work_left
from studies.models import (
    Candidate, Criterion, Item, Layout, Rater, ResponseMode, Study, StudyMethod, StudyState, Trial, TrialStatus,
)
from studies.quality import ATTENTION_CRITERION


class StudyError(ValueError):
    """A study cannot be made or changed as asked; the message names the field."""


@dataclass(frozen=True)
class CriterionSpec:
    key: str
    label: str
    question: str


# DTC's two criteria (section 4.4), scored 1 to 5 with 1 = best.
DEFAULT_CRITERIA = (
    CriterionSpec("similarity", "Similarity",
                  "How closely does the product in the marked region resemble the reference product? "
                  "1 = the same product, 5 = not at all."),
    CriterionSpec("semantic_blending", "Semantic Blending",
                  "How naturally is the product integrated into the scene (lighting, perspective, size, "
                  "occlusion)? 1 = seamless, 5 = clearly out of place."),
)
DEFAULT_INSTRUCTIONS = (
    "You will see a scene with a marked region, a reference product, and images in which a model put the "
    "product into the marked region. Rate every image on each question. The images come in a random order; "
    "judge each one on its own. Press the number keys to answer quickly: they fill the highlighted row and move "
    "to the next. Press M to switch the outline of the marked region on and off, and Enter to go on."
)
DEFAULT_CONSENT = (
    "This study is part of research on image generation. Your answers are recorded under a pseudonym with the "
    "time you spent; no other personal data is collected. Taking part is voluntary and you may stop at any time."
)
MTURK_SUBMIT_HOSTS = ("www.mturk.com", "workersandbox.mturk.com")
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"


@dataclass(frozen=True)
class ItemChoice:
    """Which samples are rated: all that every method has an output for, a random sample
    of `n` of them drawn with `seed`, or a hand-picked list of sample ids."""

    how: str = "all"  # all | random | list
    n: int = 0
    seed: int = 0
    sample_ids: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> "ItemChoice":
        """`all`, `random:N[:SEED]` or `list:ID,ID,...`."""
        how, _, rest = text.strip().partition(":")
        if how == "all" and not rest:
            return cls()
        if how == "random":
            n, _, seed = rest.partition(":")
            if not n.isdigit() or int(n) < 1 or (seed and not seed.lstrip("-").isdigit()):
                raise StudyError(f"items {text!r}: expected random:N or random:N:SEED with N a whole number >= 1")
            return cls(how="random", n=int(n), seed=int(seed or 0))
        if how == "list":
            ids = tuple(part.strip() for part in rest.split(",") if part.strip())
            if not ids:
                raise StudyError(f"items {text!r}: expected list:ID,ID,... with at least one sample id")
            return cls(how="list", sample_ids=ids)
        raise StudyError(f"items {text!r}: expected all, random:N[:SEED] or list:ID,ID,...")

    def as_dict(self) -> dict:
        return {"how": self.how, "n": self.n, "seed": self.seed, "sample_ids": list(self.sample_ids)}


def study_create(
    *, name: str, experiment: Experiment, method_keys: list[str] | None = None, items: ItemChoice = ItemChoice(),
    seed: int | None = None, criteria: tuple[CriterionSpec, ...] = DEFAULT_CRITERIA,
    response_mode: str = ResponseMode.SCORE, layout: str = Layout.SIDE_BY_SIDE, ratings_per_pair: int = 20,
    trials_per_rater: int | None = None, attention_checks: int = 1, max_attention_failures: int = 0,
    min_median_seconds: float = 0.0, assignment_timeout_seconds: int = 1200, instructions: str = DEFAULT_INSTRUCTIONS,
    consent_text: str = DEFAULT_CONSENT, completion_code: str = "", completion_url: str = "", user=None,
    live: bool = False,
) -> Study:
    """A study of `experiment`'s outputs at `seed` (default: its first), with every image
    raters will see copied and stripped first; nothing is left behind when it fails."""
    name = name.strip()
    if not name:
        raise StudyError("name: required")
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"name {name!r}: a study of that name exists; choose another")
    seed = experiment.seeds[0] if seed is None else seed
    if seed not in experiment.seeds:
        raise StudyError(f"seed {seed}: not one of the experiment's seeds {experiment.seeds}")
    columns = _chosen_columns(experiment, method_keys)
    if response_mode not in ResponseMode.values:
        raise StudyError(f"response mode {response_mode!r}: expected one of {', '.join(ResponseMode.values)}")
    if layout not in Layout.values:
        raise StudyError(f"layout {layout!r}: expected one of {', '.join(Layout.values)}")
    if response_mode == ResponseMode.RANK and len(columns) < 2:
        raise StudyError("response mode rank: ranking needs at least two methods")
    _check_criteria(criteria)
    if attention_checks and ATTENTION_CRITERION not in {c.key for c in criteria}:
        raise StudyError(f"attention checks: they are judged on the {ATTENTION_CRITERION!r} criterion (the untouched "
                         f"scene must come out worst there); add a criterion with that key or set attention checks to 0")
    samples = _chosen_samples(experiment, columns, seed, items)
    trials_per_rater = len(samples) if trials_per_rater is None else trials_per_rater
    for label, value, low in (("ratings per (item, method)", ratings_per_pair, 1),
                              ("trials per rater", trials_per_rater, 1),
                              ("attention checks", attention_checks, 0),
                              ("assignment timeout (seconds)", assignment_timeout_seconds, 30)):
        if value < low:
            raise StudyError(f"{label}: {value} is below the least allowed, {low}")
    if trials_per_rater > len(samples):
        raise StudyError(f"trials per rater: {trials_per_rater} is more than the {len(samples)} items "
                         f"(no rater sees an item twice)")
    if attention_checks > trials_per_rater:
        raise StudyError(f"attention checks: {attention_checks} is more than the {trials_per_rater} trials per rater")
    if completion_url and urlsplit(completion_url).scheme not in ("http", "https"):
        raise StudyError(f"completion URL {completion_url!r}: expected an http(s) address")

    token = secrets.token_urlsafe(12)
    folder = f"studies/{token}"
    outputs = {
        (o.method_id, o.sample_id): o
        for o in Output.objects.filter(method__in=[c.method_id for c in columns], sample__in=samples, seed=seed)
    }
    written: list[str] = []
    try:
        prepared = []
        for sample in samples:
            item_files = images.item_images(folder=folder, sample=sample, resolution=experiment.resolution)
            written += item_files.values()
            candidate_files = []
            for column in columns:
                output = outputs[(column.method_id, sample.pk)]
                path = images.candidate_image(folder=folder, source=output.image.name,
                                              resolution=experiment.resolution)
                written.append(path)
                candidate_files.append((column, output, path))
            prepared.append((sample, item_files, candidate_files))
        with transaction.atomic():
            study = Study.objects.create(
                name=name, experiment=experiment, seed=seed,
                state=StudyState.LIVE if live else StudyState.DRAFT, response_mode=response_mode, layout=layout,
                ratings_per_pair=ratings_per_pair, trials_per_rater=trials_per_rater,
                attention_checks=attention_checks, max_attention_failures=max_attention_failures,
                min_median_seconds=min_median_seconds, assignment_timeout_seconds=assignment_timeout_seconds,
                instructions=instructions, consent_text=consent_text,
                completion_code=completion_code or secrets.token_hex(4).upper(), completion_url=completion_url,
                items_chosen=items.as_dict(), token=token, created_by=user,
            )
            methods = {
                column.pk: StudyMethod.objects.create(study=study, method_id=column.method_id, key=column.key,
                                                      position=position)
                for position, column in enumerate(columns)
            }
            Criterion.objects.bulk_create([
                Criterion(study=study, key=spec.key, label=spec.label, question=spec.question, position=position)
                for position, spec in enumerate(criteria)
            ])
            for position, (sample, item_files, candidate_files) in enumerate(prepared):
                item = Item.objects.create(study=study, sample=sample, position=position, **item_files)
                Candidate.objects.bulk_create(
                    [Candidate(item=item, method=methods[column.pk], output=output, image=path)
                     for column, output, path in candidate_files]
                    + [Candidate(item=item, method=None, output=None, image=item_files["scene"])]
                )
    except BaseException:
        _delete_files(written)
        raise
    return study


def _chosen_columns(experiment: Experiment, method_keys):
    columns = experiment_columns(experiment)
    if not method_keys:
        return columns
    by_key = {c.key: c for c in columns}
    unknown = [key for key in method_keys if key not in by_key]
    if unknown:
        raise StudyError(f"methods {', '.join(unknown)}: not in experiment {experiment.name!r} "
                         f"(it has {', '.join(by_key)})")
    if len(set(method_keys)) != len(method_keys):
        raise StudyError(f"methods {', '.join(method_keys)}: a method is named twice")
    chosen = [by_key[key] for key in method_keys]
    if len({c.method_id for c in chosen}) != len(chosen):
        raise StudyError(f"methods {', '.join(method_keys)}: two keys are the same method (same identity); "
                         f"raters would score identical images")
    return chosen


def _check_criteria(criteria) -> None:
    if not criteria:
        raise StudyError("criteria: at least one is needed")
    keys = [c.key for c in criteria]
    if len(set(keys)) != len(keys):
        raise StudyError(f"criteria {', '.join(keys)}: a key is used twice")
    for spec in criteria:
        if not spec.key.replace("_", "").replace("-", "").isalnum() or not spec.label.strip() \
                or not spec.question.strip():
            raise StudyError(f"criterion {spec.key!r}: needs a key of letters, digits, - or _, a label and a question")


def _chosen_samples(experiment: Experiment, columns, seed: int, choice: ItemChoice):
    """The samples with an output of every chosen method at `seed`, as the choice says."""
    dataset_samples = {s.sample_id: s for s in experiment.dataset.samples.order_by("sample_id")}
    complete = set(dataset_samples)
    for column in columns:
        have = set(Output.objects.filter(method_id=column.method_id, seed=seed, sample__dataset=experiment.dataset)
                   .values_list("sample__sample_id", flat=True))
        complete &= have
    if choice.how == "list":
        unknown = [sid for sid in choice.sample_ids if sid not in dataset_samples]
        if unknown:
            raise StudyError(f"items: sample ids {', '.join(unknown)} are not in dataset "
                             f"{experiment.dataset.name!r}")
        incomplete = [sid for sid in choice.sample_ids if sid not in complete]
        if incomplete:
            raise StudyError(f"items: samples {', '.join(incomplete)} lack an output of some chosen method at seed "
                             f"{seed}; run `evaluate` until the experiment is complete, or leave them out")
        if len(set(choice.sample_ids)) != len(choice.sample_ids):
            raise StudyError("items: a sample id is listed twice")
        return [dataset_samples[sid] for sid in choice.sample_ids]
    ready = sorted(complete)
    if not ready:
        raise StudyError(f"items: no sample has an output of every chosen method at seed {seed} yet; "
                         f"wait for the experiment's generation to finish")
    if choice.how == "random":
        if choice.n > len(ready):
            raise StudyError(f"items: random:{choice.n} asks for more than the {len(ready)} samples ready")
        ready = sorted(random.Random(choice.seed).sample(ready, choice.n))
    return [dataset_samples[sid] for sid in ready]


def _delete_files(names: list[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            pass


ALLOWED_TRANSITIONS = {
    StudyState.DRAFT: {StudyState.LIVE, StudyState.CLOSED},
    StudyState.LIVE: {StudyState.PAUSED, StudyState.CLOSED},
    StudyState.PAUSED: {StudyState.LIVE, StudyState.CLOSED},
    StudyState.CLOSED: set(),
}


def study_state_set(*, study: Study, state: str) -> Study:
    if state not in StudyState.values:
        raise StudyError(f"state {state!r}: expected one of {', '.join(StudyState.values)}")
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if state != study.state and state not in ALLOWED_TRANSITIONS[study.state]:
            raise StudyError(f"state: a {study.state} study cannot become {state}")
        study.state = state
        study.save(update_fields=["state", "updated_at"])
    return study


@dataclass(frozen=True)
class Entry:
    platform: str
    external_id: str = ""
    external_study_id: str = ""
    external_session_id: str = ""
    turk_submit_to: str = ""
    preview: bool = False  # MTurk's preview: show the task, take no answers

    @classmethod
    def from_query(cls, query) -> "Entry":
        """The crowd platform's parameters of an entry link (Prolific's or MTurk's)."""
        if query.get("PROLIFIC_PID"):
            return cls(platform=Rater.Platform.PROLIFIC, external_id=query["PROLIFIC_PID"][:200],
                       external_study_id=query.get("STUDY_ID", "")[:200],
                       external_session_id=query.get("SESSION_ID", "")[:200])
        if query.get("assignmentId"):
            submit_to = query.get("turkSubmitTo", "")
            if urlsplit(submit_to).scheme != "https" or urlsplit(submit_to).hostname not in MTURK_SUBMIT_HOSTS:
                submit_to = ""  # answers are posted only back to MTurk itself
            if query["assignmentId"] == MTURK_PREVIEW:
                return cls(platform=Rater.Platform.MTURK, preview=True)
            return cls(platform=Rater.Platform.MTURK, external_id=query.get("workerId", "")[:200],
                       external_study_id=query.get("hitId", "")[:200],
                       external_session_id=query["assignmentId"][:200], turk_submit_to=submit_to)
        return cls(platform=Rater.Platform.ANONYMOUS)


def rater_enter(*, study: Study, entry: Entry, cookie_rater: Rater | None) -> Rater:
    """The rater this entry belongs to: the same platform id continues (another browser,
    another day); else the one in the cookie; else a new pseudonymous rater."""
    if entry.external_id:
        rater = Rater.objects.filter(study=study, platform=entry.platform, external_id=entry.external_id).first()
        if rater is None:
            try:
                with transaction.atomic():
                    rater = _rater_new(study, entry)
            except IntegrityError:  # the same person entered twice at once
                rater = Rater.objects.get(study=study, platform=entry.platform, external_id=entry.external_id)
        elif entry.external_session_id and entry.external_session_id != rater.external_session_id:
            rater.external_session_id = entry.external_session_id
            rater.external_study_id = entry.external_study_id or rater.external_study_id
            rater.turk_submit_to = entry.turk_submit_to or rater.turk_submit_to
            rater.save(update_fields=["external_session_id", "external_study_id", "turk_submit_to"])
        return rater
    if cookie_rater is not None and cookie_rater.study_id == study.pk:
        return cookie_rater
    return _rater_new(study, entry)


def _rater_new(study: Study, entry: Entry) -> Rater:
    positions = sorted(random.SystemRandom().sample(range(study.trials_per_rater), study.attention_checks))
    return Rater.objects.create(
        study=study, pseudonym=f"r-{secrets.token_hex(5)}", token=secrets.token_urlsafe(24),
        platform=entry.platform, external_id=entry.external_id, external_study_id=entry.external_study_id,
        external_session_id=entry.external_session_id, turk_submit_to=entry.turk_submit_to,
        attention_positions=positions,
    )


def rater_consent(*, rater: Rater) -> None:
    if rater.consented_at is None:
        Rater.objects.filter(pk=rater.pk, consented_at__isnull=True).update(consented_at=timezone.now())


def trial_shown(*, trial: Trial) -> None:
    """The first time the trial's page is served starts its clock."""
    if trial.shown_at is None:
        Trial.objects.filter(pk=trial.pk, shown_at__isnull=True).update(shown_at=timezone.now())


def rater_finish(*, rater: Rater) -> bool:
    """Mark the rater finished, and say so, when they have answered something and have
    nothing left: their share done, the study full, closed, or their attention checks
    failed. A rater who answered nothing gets no completion code."""
    if rater.finished_at is not None:
        return True
    if not rater.trials.filter(status=TrialStatus.ANSWERED).exists():
        return False
    if rater.study.state != StudyState.CLOSED and work_left(rater=rater):
        return False
    Rater.objects.filter(pk=rater.pk, finished_at__isnull=True).update(finished_at=timezone.now())
    return True
