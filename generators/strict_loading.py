"""Loading a model folder only when its weights are exactly the ones its config asks for.

diffusers and transformers both load a folder whose weights miss parameters, carry others,
or differ in shape (with ignore_mismatched_sizes), with no more than a logged warning and
the missing parts left random or on the meta device. A checkpoint trained elsewhere must
load into exactly the parts it trained, so every component here goes through this.
"""
from __future__ import annotations

import json
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
        # Sorted: transformers reports them in a set, and a message should not change from run to run.
        entries = sorted(mismatched, key=lambda entry: str(entry[0] if isinstance(entry, (tuple, list)) else entry))
        more = f" (and {len(entries) - _SHOWN} more)" if len(entries) > _SHOWN else ""
        problems.append("shapes differ: " + "; ".join(_mismatch(entry) for entry in entries[:_SHOWN]) + more)
    if missing:
        problems.append(f"parameters missing from the weights: {_listed(missing)}")
    if unexpected:
        problems.append(f"weights the config has no place for: {_listed(unexpected)}")
    return problems


def _diffusers_shape_problems(model_class, folder: Path) -> list[str]:
    """For a diffusers model with safetensors weights (one file or shards): the config's
    parameters (built on the meta device, no memory) against the files' headers (no weights
    read)."""
    single, index = folder / "diffusion_pytorch_model.safetensors", folder / "diffusion_pytorch_model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        files = []
    if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin) and files):
        return []
    with torch.device("meta"):
        model = model_class.from_config(model_class.load_config(str(folder)))
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            found.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
    # Old Stable Diffusion VAEs name their attention query/key/value/proj_attn; diffusers
    # renames them on load, so the header's names are renamed the same way first.
    found = model._fix_state_dict_keys_on_load(found)
    mismatched = [(key, found[key], shape) for key, shape in expected.items() if key in found and found[key] != shape]
    return _problems(expected.keys() - found.keys(), found.keys() - expected.keys(), mismatched)


def load_strictly(model_class, folder: str | Path, component: str, **kwargs):
    """model_class.from_pretrained(folder, **kwargs), or GeneratorError naming the folder,
    the component and each parameter that is missing, unexpected, or of another shape."""
    folder = Path(folder)
    problems = _diffusers_shape_problems(model_class, folder)
    if not problems:
        if not issubclass(model_class, ModelMixin):
            # transformers then lists reshaped weights (with both shapes) instead of raising
            # a message without them; they are refused below all the same.
            kwargs = {"ignore_mismatched_sizes": True, **kwargs}
        model, info = model_class.from_pretrained(str(folder), output_loading_info=True, local_files_only=True, **kwargs)
        problems = _problems(info.get("missing_keys"), info.get("unexpected_keys"), info.get("mismatched_keys"))
        problems += [str(message) for message in info.get("error_msgs") or ()]
    if problems:
        raise GeneratorError(f"{folder}: the {component} weights do not match its config.json; " + "; ".join(problems))
    return model
