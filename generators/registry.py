"""From a MethodSpec to a Generator.

validate_spec reads no weights and imports no torch, so the web and the CLI can reject a
bad experiment file before queuing work; build_generator loads the weights.
"""
from __future__ import annotations

import importlib
from dataclasses import replace

from generators.base import Generator
from generators.checkpoints import check_dtc_checkpoint, check_pbe_checkpoint, check_sd_inpainting_checkpoint
from generators.families import FAMILIES, get_family, resolve_params
from generators.types import GeneratorError, MethodSpec

__all__ = ["FAMILIES", "build_generator", "validate_spec"]

# The diffusion families: each a generators.pipeline_generator.PipelineGenerator.
_PIPELINE_GENERATORS = {
    "pbe": ("generators.pbe", "PbeGenerator"),
    "dtc": ("generators.dtc", "DtcGenerator"),
    "dreampaint": ("generators.dreampaint", "DreamPaintGenerator"),
}
_CHECKPOINT_CHECKS = {"pbe": check_pbe_checkpoint, "dtc": check_dtc_checkpoint,
                      "dreampaint": check_sd_inpainting_checkpoint}


def validate_spec(spec: MethodSpec) -> MethodSpec:
    """`spec` with its parameters' defaults filled in, once family, parameters and the
    checkpoint's layout are valid; GeneratorError naming the field otherwise."""
    family = get_family(spec.family)
    params = resolve_params(family.key, spec.params)
    if family.needs_checkpoint:
        _CHECKPOINT_CHECKS[family.key](spec.checkpoint, params)
    elif spec.checkpoint:
        raise GeneratorError(
            f"method family {family.key!r} takes no checkpoint, got checkpoint = {spec.checkpoint!r}"
        )
    return replace(spec, params=params)


def build_generator(
    spec: MethodSpec, *, device="cpu", dtype=None, batch_invariant: bool = True
) -> Generator:
    """A ready generator (weights loaded on `device`). dtype: None = the family's default
    for the device; batch_invariant: see PbeGenerator."""
    spec = validate_spec(spec)
    # Family modules are imported here, not at the top: they import torch and diffusers.
    if spec.family == "copy_paste":
        from generators.copy_paste import CopyPasteGenerator

        return CopyPasteGenerator(spec.params)
    if spec.family in _PIPELINE_GENERATORS:
        module, name = _PIPELINE_GENERATORS[spec.family]
        generator_class = getattr(importlib.import_module(module), name)
        return generator_class(
            spec.checkpoint, params=spec.params, device=device, dtype=dtype, batch_invariant=batch_invariant
        )
    raise GeneratorError(f"method family {spec.family!r} is not available yet")
