"""Loading a model folder only when its weights are exactly the ones its config asks for.

diffusers and transformers both load a folder whose weights miss parameters, carry others,
or differ in shape (with ignore_mismatched_sizes), with no more than a logged warning and
the missing parts left random or on the meta device. A checkpoint trained elsewhere must
load into exactly the parts it trained, so every component here goes through this.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ModelMixin
from safetensors import safe_open

from generators.types import GeneratorError

_SHOWN = 4


def _listed(keys) -> str:
    keys = sorted(str(key) for key in keys)
    more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _mismatch(entry) -> str:
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        key, found, expected = entry
        return f"{key}: weights {tuple(found)}, config {tuple(expected)}"
    return str(entry)


def _problems(missing, unexpected, mismatched) -> list[str]:
    problems = []
    if mismatched:
        problems.append("shapes differ: " + "; ".join(_mismatch(entry) for entry in list(mismatched)[:_SHOWN]))
    if missing:
        problems.append(f"parameters missing from the weights: {_listed(missing)}")
    if unexpected:
        problems.append(f"weights the config has no place for: {_listed(unexpected)}")
    return problems


def _diffusers_shape_problems(model_class, folder: Path) -> list[str]:
    """For a diffusers model with safetensors weights: the config's parameters (built on the
    meta device, no memory) against the file's header (no weights read)."""
    weights = folder / "diffusion_pytorch_model.safetensors"
    if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin) and weights.is_file()):
        return []
    with torch.device("meta"):
        model = model_class.from_config(model_class.load_config(str(folder)))
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    with safe_open(str(weights), framework="pt") as handle:
        found = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    mismatched = [(key, found[key], shape) for key, shape in expected.items() if key in found and found[key] != shape]
    return _problems(expected.keys() - found.keys(), found.keys() - expected.keys(), mismatched)


def load_strictly(model_class, folder: str | Path, component: str, **kwargs):
    """model_class.from_pretrained(folder, **kwargs), or GeneratorError naming the folder,
    the component and each parameter that is missing, unexpected, or of another shape."""
    folder = Path(folder)
    problems = _diffusers_shape_problems(model_class, folder)
    if not problems:
        model, info = model_class.from_pretrained(str(folder), output_loading_info=True, local_files_only=True, **kwargs)
        problems = _problems(info.get("missing_keys"), info.get("unexpected_keys"), info.get("mismatched_keys"))
    if problems:
        raise GeneratorError(f"{folder}: the {component} weights do not match its config.json; " + "; ".join(problems))
    return model
