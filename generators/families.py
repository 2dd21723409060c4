"""What each method family is and which parameters it takes. Metadata only: importing
this module loads no torch, so the web and CLI can check an experiment file cheaply.

Family keys and parameter values are stored in the database: never rename them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from generators.types import GeneratorError


@dataclass(frozen=True)
class Choice:
    """A parameter whose value is one of a fixed set of strings."""

    name: str
    default: str
    available: tuple[str, ...]
    planned: tuple[str, ...] = ()  # valid registry values, not implemented yet

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.available + self.planned


@dataclass(frozen=True)
class Number:
    """A numeric parameter within [low, high]; default None: the family fills it in."""

    name: str
    default: float | int | None
    kind: type = int
    low: float = 0
    high: float = float("inf")

    def check(self, family_key: str, value):
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (self.kind is int and not isinstance(value, int)) or not self.low <= value <= self.high:
            kind = "a whole number" if self.kind is int else "a number"
            raise GeneratorError(
                f"method family {family_key!r}: {self.name} = {value!r}: expected {kind} from {self.low:g} to {self.high:g}"
            )
        return self.kind(value)


def _dreampaint_defaults(params: dict) -> dict:
    """The learning rate DreamBooth uses for the mode: full fine-tuning low, LoRA higher."""
    if params.get("learning_rate") is None:
        params["learning_rate"] = {"full": 5e-6, "lora": 1e-4}[params["mode"]]
    return params


@dataclass(frozen=True)
class Family:
    key: str
    available: bool
    needs_checkpoint: bool
    params: tuple[Choice | Number, ...] = ()
    # False for families that run no sampler: steps, guidance and batching do not change
    # their pixels, so they are left out of the method's identity.
    samples: bool = True
    # Sampling steps when the experiment file sets none (each paper's own).
    default_steps: int = 50
    # Fills in defaults that depend on other parameters.
    fill_defaults: Callable[[dict], dict] | None = None


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family("copy_paste", available=True, needs_checkpoint=False, samples=False),
        Family(
            "pbe",
            available=True,
            needs_checkpoint=True,
            params=(
                Choice("encoder", "clip_cls", available=("clip_cls", "clip_all", "dinov2")),
            ),
        ),
        Family(
            "dtc",
            available=True,
            needs_checkpoint=True,
            params=(
                Choice("fusion", "film", available=("film", "cross_attention", "addition")),
            ),
            default_steps=40,  # DTC: DDIM, 40 steps
        ),
        Family(
            "dreampaint",
            available=True,
            needs_checkpoint=True,  # a Stable Diffusion inpainting checkpoint: the base
            params=(
                Choice("mode", "full", available=("full", "lora")),
                # The per-product fine-tuning (generators.dreampaint.Recipe), the paper's scale by default.
                Number("steps", 400, int, 1, 100_000),
                Number("learning_rate", None, float, 0, 1),
                Number("rank", 32, int, 1, 1024),  # about 26 MB per product at SD 1.5 scale (float32)
                Number("resolution", 512, int, 8, 4096),
                Number("batch_size", 1, int, 1, 256),
                Number("seed", 0, int, 0, 2**31 - 1),
            ),
            fill_defaults=_dreampaint_defaults,
        ),
    )
}


def get_family(key: str) -> Family:
    """The family named `key`; GeneratorError listing the known families otherwise."""
    family = FAMILIES.get(key)
    if family is None:
        raise GeneratorError(
            f"unknown method family {key!r}; known families: {', '.join(FAMILIES)}"
        )
    if not family.available:
        raise GeneratorError(f"method family {key!r} is not available yet")
    return family


def resolve_params(family_key: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` checked against the family's choices, with defaults filled in."""
    family = get_family(family_key)
    known = {choice.name: choice for choice in family.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise GeneratorError(
            f"method family {family_key!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"allowed parameters: {allowed}"
        )
    resolved: dict[str, Any] = {}
    for choice in family.params:
        if isinstance(choice, Number):
            value = params.get(choice.name, choice.default)
            resolved[choice.name] = None if value is None else choice.check(family_key, value)
            continue
        value = params.get(choice.name, choice.default)
        if value in choice.planned and value not in choice.available:
            raise GeneratorError(
                f"method family {family_key!r}: {choice.name} = {value!r} is not available yet "
                f"(available now: {', '.join(choice.available)})"
            )
        if value not in choice.available:
            raise GeneratorError(
                f"method family {family_key!r}: {choice.name} = {value!r} is not allowed; "
                f"allowed values: {', '.join(choice.allowed)}"
            )
        resolved[choice.name] = value
    return family.fill_defaults(resolved) if family.fill_defaults else resolved
