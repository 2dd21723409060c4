from __future__ import annotations

from django import forms

from studies.models import Layout, ResponseMode
from studies.services import DEFAULT_CONSENT, DEFAULT_CRITERIA, DEFAULT_INSTRUCTIONS, CriterionSpec, ItemChoice

CRITERIA_HELP = "One per line: key | label | question shown to raters"


def criteria_text(criteria=DEFAULT_CRITERIA) -> str:
    return "\n".join(f"{c.key} | {c.label} | {c.question}" for c in criteria)


def criteria_parse(text: str) -> tuple[CriterionSpec, ...]:
    specs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 3 or not all(parts):
            raise forms.ValidationError(f"line {number}: expected key | label | question, got {line.strip()!r}")
        specs.append(CriterionSpec(*parts))
    return tuple(specs)


class StudyForm(forms.Form):
    name = forms.CharField(max_length=200)
    methods = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    seed = forms.TypedChoiceField(coerce=int, help_text="The seed whose outputs raters see")
    items = forms.ChoiceField(choices=[("all", "All samples"), ("random", "A random sample"),
                                       ("list", "A hand-picked list")], initial="all")
    n_items = forms.IntegerField(min_value=1, required=False, label="How many (random)")
    items_seed = forms.IntegerField(initial=0, required=False, label="Random seed (random)")
    sample_ids = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                 label="Sample ids (list)", help_text="Separated by commas or new lines")
    criteria = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), initial=criteria_text, help_text=CRITERIA_HELP)
    response_mode = forms.ChoiceField(choices=ResponseMode.choices, initial=ResponseMode.SCORE)
    layout = forms.ChoiceField(choices=Layout.choices, initial=Layout.SIDE_BY_SIDE)
    ratings_per_pair = forms.IntegerField(min_value=1, initial=20, label="Ratings per (item, method)")
    trials_per_rater = forms.IntegerField(min_value=1, required=False, help_text="Blank: every item")
    attention_checks = forms.IntegerField(min_value=0, initial=1, label="Attention checks per rater")
    max_attention_failures = forms.IntegerField(min_value=0, initial=0,
                                                help_text="Exclude raters failing more checks than this")
    min_median_seconds = forms.FloatField(min_value=0, initial=0,
                                          help_text="Exclude raters faster than this per item (median; 0 = off)")
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), initial=DEFAULT_INSTRUCTIONS)
    consent_text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), initial=DEFAULT_CONSENT)
    completion_code = forms.CharField(max_length=100, required=False, help_text="Blank: a random code")
    completion_url = forms.URLField(required=False, assume_scheme="https", help_text="Prolific's completion URL (raters are sent there)")
    live = forms.BooleanField(required=False, initial=True, label="Open to raters at once")

    def __init__(self, *args, experiment, **kwargs):
        super().__init__(*args, **kwargs)
        keys = [c.key for c in experiment.methods.order_by("position")]
        self.fields["methods"].choices = [(k, k) for k in keys]
        self.fields["methods"].initial = keys
        self.fields["seed"].choices = [(s, s) for s in experiment.seeds]
        self.fields["seed"].initial = experiment.seeds[0]

    def clean_criteria(self):
        return criteria_parse(self.cleaned_data["criteria"])

    def item_choice(self) -> ItemChoice:
        data = self.cleaned_data
        if data["items"] == "random":
            if not data.get("n_items"):
                raise forms.ValidationError("How many (random): required for a random sample")
            return ItemChoice(how="random", n=data["n_items"], seed=data.get("items_seed") or 0)
        if data["items"] == "list":
            ids = tuple(p.strip() for p in data["sample_ids"].replace("\n", ",").split(",") if p.strip())
            if not ids:
                raise forms.ValidationError("Sample ids (list): required for a hand-picked list")
            return ItemChoice(how="list", sample_ids=ids)
        return ItemChoice()
