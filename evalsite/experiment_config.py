"""Parsing and checking an experiment TOML file (README "Experiment file")."""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from generators.families import FAMILIES, get_family, resolve_params
from generators.types import GeneratorError

KNOWN_METRICS = ("clip_score", "fid", "fid_clip", "kid")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
TOP_LEVEL_KEYS = {
    "name", "dataset", "description", "seeds", "num_inference_steps", "guidance_scale",
    "resolution", "batch_size", "batch_invariant", "metrics", "methods",
}
METHOD_KEYS = {"key", "family", "params", "checkpoint", "num_inference_steps", "guidance_scale"}


class ExperimentConfigError(Exception):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{listed}")


@dataclass(frozen=True)
class MethodConfig:
    key: str
    family: str
    params: dict = field(default_factory=dict)
    checkpoint: str = ""
    # Resolved when the file is read: the method's own value, else the file's, else (steps)
    # the family's default; None only for families that run no sampler.
    num_inference_steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    dataset: str
    methods: tuple[MethodConfig, ...]
    seeds: tuple[int, ...] = (0,)
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    resolution: int = 512
    batch_size: int = 4
    # True: every image is bit-identical whatever batch it is generated in (one pipeline
    # call per image). False: one batched call per batch, faster on a GPU, but batched
    # kernels round differently, so a few pixels may move by a unit with the batch.
    batch_invariant: bool = True
    metrics: tuple[str, ...] = ("clip_score", "fid")
    description: str = ""

    def as_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def content_hash(self, dataset_hash: str) -> str:
        """What decides the images: everything but the name and description."""
        payload = self.as_json()
        payload.pop("name")
        payload.pop("description")
        payload["dataset"] = dataset_hash
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_experiment_config(text, source=str(path))


def parse_experiment_config(text: str, *, source: str = "<experiment>") -> ExperimentConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentConfigError(source, [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")

    name = _string(data, "name", problems, required=True)
    dataset = _string(data, "dataset", problems, required=True)
    seeds = data.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        problems.append(f"seeds = {seeds!r}: expected a non-empty list of non-negative integers, e.g. [0, 1, 2]")
    elif len(set(seeds)) != len(seeds):
        problems.append(f"seeds = {seeds!r}: a seed is listed twice")
    steps = _integer(data, "num_inference_steps", 50, 1, 1000, problems)
    resolution = _integer(data, "resolution", 512, 8, 4096, problems)
    if isinstance(resolution, int) and resolution % 8:
        problems.append(f"resolution = {resolution}: expected a multiple of 8 (latent diffusion works on 8x-downsampled latents)")
    batch_size = _integer(data, "batch_size", 4, 1, 256, problems)
    guidance = _guidance(data, "guidance_scale", 5.0, problems)
    batch_invariant = data.get("batch_invariant", True)
    if not isinstance(batch_invariant, bool):
        problems.append(f"batch_invariant = {batch_invariant!r}: expected true or false")
    metrics = data.get("metrics", ["clip_score", "fid"])
    if not isinstance(metrics, list) or any(m not in KNOWN_METRICS for m in metrics):
        problems.append(f"metrics = {metrics!r}: expected a list drawn from {', '.join(KNOWN_METRICS)}")

    file_steps = steps if "num_inference_steps" in data else None
    methods = _methods(data.get("methods"), problems, steps=file_steps, guidance=guidance)
    if problems:
        raise ExperimentConfigError(source, problems)
    return ExperimentConfig(
        name=name,
        dataset=dataset,
        methods=tuple(methods),
        seeds=tuple(seeds),
        num_inference_steps=steps,
        guidance_scale=float(guidance),
        resolution=resolution,
        batch_size=batch_size,
        batch_invariant=batch_invariant,
        metrics=tuple(metrics),
        description=str(data.get("description", "")),
    )


def _string(data, key, problems, *, required=False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key} = {value!r}: expected a non-empty string")
        return ""
    return value.strip()


def _integer(data, key, default, low, high, problems):
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append(f"{key} = {value!r}: expected a whole number from {low} to {high}")
    return value


def _guidance(data, key, default, problems):
    value = data.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        problems.append(f"{key} = {value!r}: expected a number >= 0 (1 disables classifier-free guidance)")
        return default
    return float(value)


def _sampling(entry, family: str, where: str, problems, *, steps, guidance) -> tuple[int | None, float | None]:
    """A method's steps and guidance: its own, else the file's, else the family's default."""
    if not get_family(family).samples:
        for key in ("num_inference_steps", "guidance_scale"):
            if key in entry:
                problems.append(f"{where}: family {family!r} runs no sampler; {key} does not apply")
        return None, None
    method_problems: list[str] = []
    own_steps = _integer(entry, "num_inference_steps", steps or get_family(family).default_steps, 1, 1000, method_problems)
    own_guidance = _guidance(entry, "guidance_scale", guidance, method_problems)
    problems.extend(f"{where}: {problem}" for problem in method_problems)
    return own_steps, own_guidance


def _methods(raw, problems, *, steps=None, guidance=5.0) -> list[MethodConfig]:
    if not isinstance(raw, list) or not raw:
        problems.append("methods: expected at least one [[methods]] table with key and family")
        return []
    methods, seen = [], set()
    for index, entry in enumerate(raw, start=1):
        where = f"methods #{index}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table")
            continue
        key = entry.get("key")
        if isinstance(key, str):
            where = f"method {key!r}"
        unknown = sorted(set(entry) - METHOD_KEYS)
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(METHOD_KEYS))}")
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            problems.append(f"{where}: key = {key!r}: expected letters, digits, '_', '-', '.', '+' (at most 100)")
        elif key in seen:
            problems.append(f"{where}: key is used by two methods")
        seen.add(key)
        family = entry.get("family")
        params = entry.get("params", {})
        checkpoint = entry.get("checkpoint", "")
        if family not in FAMILIES:
            problems.append(f"{where}: family = {family!r}: expected one of {', '.join(FAMILIES)}")
            continue
        if not isinstance(params, dict):
            problems.append(f"{where}: params: expected a table")
            continue
        if not isinstance(checkpoint, str):
            problems.append(f"{where}: checkpoint = {checkpoint!r}: expected a path string")
            continue
        try:
            # Checkpoints are checked where they live (evaluate warns, the worker fails the
            # job); here only what the file itself can get wrong.
            params = resolve_params(family, params)
            if get_family(family).needs_checkpoint and not checkpoint:
                raise GeneratorError(f"family {family!r} needs checkpoint = \"PATH\"")
            if checkpoint and not get_family(family).needs_checkpoint:
                raise GeneratorError(f"family {family!r} takes no checkpoint")
        except GeneratorError as exc:
            problems.append(f"{where}: {exc}")
            continue
        own_steps, own_guidance = _sampling(entry, family, where, problems, steps=steps, guidance=guidance)
        methods.append(MethodConfig(key=key, family=family, params=params, checkpoint=checkpoint,
                                    num_inference_steps=own_steps, guidance_scale=own_guidance))
    return methods
