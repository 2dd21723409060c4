"""Device and dtype choice for the torch families."""
from __future__ import annotations

import torch

from generators.types import GeneratorError

_DTYPES_BY_NAME = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


def resolve_dtype(device: str | torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """`dtype` (a torch.dtype or a name such as "fp16") when given, else float16 on CUDA
    and float32 elsewhere (half precision is slow, or missing, on CPU)."""
    if dtype is None:
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = _DTYPES_BY_NAME.get(str(dtype).lower())
    if resolved is None:
        raise GeneratorError(
            f"dtype {dtype!r} is not allowed; allowed values: {', '.join(_DTYPES_BY_NAME)}"
        )
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_generator(seed: int) -> torch.Generator:
    """Seeded CPU generator: the same seed draws the same noise on any device."""
    return torch.Generator("cpu").manual_seed(seed)
