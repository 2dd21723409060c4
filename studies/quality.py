"""The attention-check rule, shared by answering (which counts a rater's failures as they
happen, so a failing rater stops getting work) and the results (which exclude them)."""
from __future__ import annotations

from studies.models import ResponseMode

ATTENTION_CRITERION = "similarity"


def attention_check_passed(scene: int, others: list[int], *, response_mode: str) -> bool:
    """The untouched scene shows no product at all, so on Similarity it must come out
    worst: in rank mode ranked last; in score mode scored 5, or no better than any output
    and worse than the best one. A rater who scores everything alike fails unless that is
    5: when every output is bad, an attentive rater says so, and is not to be excluded."""
    if not others:
        return True
    if response_mode == ResponseMode.RANK:
        return scene == len(others) + 1
    return scene == 5 or (scene >= max(others) and scene > min(others))
