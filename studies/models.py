"""The human-study data model. A study rates one experiment's outputs: each item (a sample)
shows its candidates (one output per chosen method, at the study's seed) to raters, who are
pseudonymous records bound to an entry link and a signed cookie, never Django users."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class StudyState(models.TextChoices):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    CLOSED = "closed"


class ResponseMode(models.TextChoices):
    SCORE = "score", "Score each image 1 to 5 (1 = best)"
    RANK = "rank", "Rank the candidates of an item (1 = best)"


class Layout(models.TextChoices):
    SIDE_BY_SIDE = "side_by_side", "An item's candidates side by side"
    SINGLE = "single", "One image per screen"


class Study(models.Model):
    name = models.CharField(max_length=200, unique=True)
    experiment = models.ForeignKey("evalsite.Experiment", on_delete=models.PROTECT, related_name="studies")
    seed = models.BigIntegerField(help_text="The seed whose outputs are rated")
    state = models.CharField(max_length=10, choices=StudyState.choices, default=StudyState.DRAFT)
    response_mode = models.CharField(max_length=10, choices=ResponseMode.choices, default=ResponseMode.SCORE)
    layout = models.CharField(max_length=20, choices=Layout.choices, default=Layout.SIDE_BY_SIDE)
    ratings_per_pair = models.PositiveIntegerField(help_text="Ratings wanted per (item, method)")
    trials_per_rater = models.PositiveIntegerField(help_text="Items one rater scores")
    attention_checks = models.PositiveIntegerField(default=0, help_text="Trials per rater with a check")
    max_attention_failures = models.PositiveIntegerField(
        default=0, help_text="A rater failing more attention checks than this is excluded")
    min_median_seconds = models.FloatField(
        default=0.0, help_text="A rater whose median time per trial is below this is excluded (0 = off)")
    assignment_timeout_seconds = models.PositiveIntegerField(
        default=1200, help_text="An assigned trial with no activity for this long goes to another rater")
    instructions = models.TextField()
    consent_text = models.TextField()
    completion_code = models.CharField(max_length=100)
    completion_url = models.URLField(max_length=500, blank=True,
                                     help_text="Where finished raters are sent (Prolific's completion URL)")
    items_chosen = models.JSONField(default=dict, help_text="How the items were picked")
    # The link's opaque id: the entry URL reveals neither the study's name nor its number.
    token = models.CharField(max_length=40, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self):
        return self.name


class StudyMethod(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="methods")
    method = models.ForeignKey("evalsite.Method", on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=100, help_text="The experiment's name for it")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "position"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="study_method_key_unique")]

    def __str__(self):
        return self.key


class Criterion(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=50)
    label = models.CharField(max_length=100)
    question = models.TextField(help_text="Shown to raters")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "position"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="criterion_key_unique")]

    def __str__(self):
        return self.label


class Item(models.Model):
    """One sample of the study; its images are copies made for raters (re-encoded, no
    metadata, under names that say nothing)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    sample = models.ForeignKey("evalsite.Sample", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()
    scene = models.CharField(max_length=500)
    scene_outlined = models.CharField(max_length=500)
    reference = models.CharField(max_length=500)

    class Meta:
        ordering = ["study", "position"]
        constraints = [models.UniqueConstraint(fields=["study", "sample"], name="item_sample_unique")]


class Candidate(models.Model):
    """An image raters score: one method's output, or (attention check) the untouched scene."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="candidates")
    method = models.ForeignKey(StudyMethod, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    output = models.ForeignKey("evalsite.Output", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    image = models.CharField(max_length=500)

    @property
    def is_attention_check(self) -> bool:
        return self.method_id is None


class Rater(models.Model):
    class Platform(models.TextChoices):
        ANONYMOUS = "anonymous"
        PROLIFIC = "prolific"
        MTURK = "mturk"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="raters")
    pseudonym = models.CharField(max_length=20, unique=True)
    token = models.CharField(max_length=40, unique=True, help_text="Secret, in the signed cookie")
    platform = models.CharField(max_length=10, choices=Platform.choices, default=Platform.ANONYMOUS)
    external_id = models.CharField(max_length=200, blank=True, help_text="PROLIFIC_PID or workerId")
    external_study_id = models.CharField(max_length=200, blank=True, help_text="STUDY_ID or hitId")
    external_session_id = models.CharField(max_length=200, blank=True, help_text="SESSION_ID or assignmentId")
    turk_submit_to = models.URLField(max_length=300, blank=True)
    # Trial numbers (0-based, in the rater's order) that carry an attention check.
    attention_positions = models.JSONField(default=list)
    # Counted as attention trials are answered: past the study's limit, no more work.
    failed_checks = models.PositiveIntegerField(default=0)
    consented_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "platform", "external_id"], condition=~models.Q(external_id=""),
                                    name="rater_external_id_unique_in_study"),
        ]

    def __str__(self):
        return self.pseudonym


class TrialStatus(models.TextChoices):
    ASSIGNED = "assigned"
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # no activity for the timeout: its slot went back to the pool


class Trial(models.Model):
    """One item shown to one rater, with its candidates in the slot order that rater saw."""

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="trials")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="trials")
    position = models.PositiveIntegerField(help_text="Its number in the rater's sequence, from 0")
    token = models.CharField(max_length=40, unique=True)
    status = models.CharField(max_length=10, choices=TrialStatus.choices, default=TrialStatus.ASSIGNED)
    attention_check = models.BooleanField(default=False)
    slot_order = models.JSONField(help_text="Candidate ids in the order shown (slot 0 first)")
    assigned_at = models.DateTimeField(default=timezone.now)
    active_at = models.DateTimeField(default=timezone.now, help_text="Last request of the rater for it")
    shown_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rater", "position"]
        constraints = [models.UniqueConstraint(fields=["rater", "item"], name="trial_item_once_per_rater")]
        indexes = [models.Index(fields=["item", "status"])]

    @property
    def seconds(self) -> float | None:
        if self.shown_at is None or self.answered_at is None:
            return None
        return (self.answered_at - self.shown_at).total_seconds()


class TrialImage(models.Model):
    """An opaque URL token for one image of one trial: it names neither the method nor the
    sample and opens only for the trial's rater."""

    class Role(models.TextChoices):
        SCENE = "scene"
        SCENE_OUTLINED = "scene_outlined"
        REFERENCE = "reference"
        CANDIDATE = "candidate"

    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="images")
    token = models.CharField(max_length=40, unique=True)
    role = models.CharField(max_length=20, choices=Role.choices)
    slot = models.PositiveIntegerField(null=True, blank=True)
    path = models.CharField(max_length=500)


class Rating(models.Model):
    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="ratings")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="ratings")
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="ratings")
    slot = models.PositiveIntegerField()
    score = models.PositiveSmallIntegerField(help_text="1 = best (a score or a rank)")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trial", "candidate", "criterion"], name="rating_once_per_trial"),
        ]
