"""Generators loaded once per worker process and reused across jobs.

Loading happens on first use, never at import. A small LRU bounds what one worker keeps
in (GPU) memory when an experiment alternates between many methods.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict

from django.conf import settings

from generators.registry import build_generator
from generators.types import MethodSpec

MAX_LOADED = 2
_loaded: OrderedDict[tuple, object] = OrderedDict()
_lock = threading.Lock()
_device: str | None = None


def worker_device() -> str:
    global _device
    if _device is None:
        wanted = settings.EVALSITE_DEVICE
        if wanted == "auto":
            import torch

            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        _device = wanted
    return _device


def _key(spec: MethodSpec, batch_invariant: bool, identity: str = "") -> tuple:
    # The identity holds the checkpoint's content: weights rewritten at the same path are
    # loaded afresh, never served from the copy in memory.
    return (*_model_key(spec), batch_invariant, identity)


def _model_key(spec: MethodSpec) -> tuple:
    return (spec.family, json.dumps(spec.params, sort_keys=True), spec.checkpoint, worker_device())


def generator_get(spec: MethodSpec, *, batch_invariant: bool = True, identity: str = ""):
    device = worker_device()
    key = _key(spec, batch_invariant, identity)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        while len(_loaded) >= MAX_LOADED:
            _loaded.popitem(last=False)
            _release_device_memory(device)
        generator = build_generator(spec, device=device, batch_invariant=batch_invariant)
        _loaded[key] = generator
        return generator


def _release_device_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def generator_forget(spec: MethodSpec) -> None:
    """Drop a generator (after it ran out of memory), whatever its batch mode or identity."""
    model = _model_key(spec)
    with _lock:
        for key in [k for k in _loaded if k[: len(model)] == model]:
            del _loaded[key]
        _release_device_memory(worker_device())
