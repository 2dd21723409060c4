"""Method identities (README "Method identity") and the MethodSpec a worker builds from one.

An identity is a hash of the family, its resolved params, the checkpoint's content and the
settings that change pixels. A checkpoint's content identity is a hash of its files; each
file's digest is cached in the database by (real path, size, mtime), so it is computed
once, and weights rewritten at the same path get a new identity.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from evalsite.models import FileDigest, Method
from generators.families import get_family
from generators.types import GenerationSettings, GeneratorError, MethodSpec

_CHUNK = 8 * 1024 * 1024


def resolve_checkpoint(checkpoint: str) -> str:
    """Relative checkpoint paths are resolved against EVALSITE_WEIGHTS_DIR."""
    if not checkpoint:
        return ""
    path = Path(checkpoint).expanduser()
    if not path.is_absolute():
        path = Path(settings.EVALSITE_WEIGHTS_DIR) / path
    return str(path)


def checkpoint_files(path: Path) -> list[tuple[str, Path]]:
    """(name relative to the checkpoint, file) for every file of a checkpoint file or
    folder, sorted; hidden files (download caches, .gitattributes) are not weights."""
    if path.is_file():
        return [(path.name, path)]
    found = []
    for folder, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith("."):
                file = Path(folder) / name
                found.append((file.relative_to(path).as_posix(), file))
    return sorted(found)


def file_digests(files: list[Path], on_hashing=None) -> list[str]:
    """sha256 of each file, from the cache while its size and mtime are unchanged (one
    query for all of them); the others are read, hashed and added to the cache.
    on_hashing(files, bytes) is told before uncached files are read (gigabytes, for real
    checkpoints: the caller shows it)."""
    keys = []
    for file in files:
        real = os.path.realpath(file)
        stat = os.stat(real)
        keys.append((real, stat.st_size, stat.st_mtime_ns))
    cached = {
        (d.path, d.size, d.mtime_ns): d.sha256
        for d in FileDigest.objects.filter(path__in=[k[0] for k in keys])
    }
    fresh = []
    uncached = [key for key in keys if key not in cached]
    if uncached and on_hashing is not None:
        on_hashing(len(uncached), sum(key[1] for key in uncached))
    for key in keys:
        if key not in cached:
            cached[key] = _sha256(key[0])
            fresh.append(FileDigest(path=key[0], size=key[1], mtime_ns=key[2], sha256=cached[key]))
    FileDigest.objects.bulk_create(fresh, ignore_conflicts=True)
    for digest in fresh:  # the entries of a file's earlier versions are dead
        FileDigest.objects.filter(path=digest.path).exclude(size=digest.size, mtime_ns=digest.mtime_ns).delete()
    return [cached[key] for key in keys]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(path: str | Path, on_hashing=None) -> str:
    """Content identity of a checkpoint file or folder; GeneratorError when it is missing."""
    path = Path(path)
    if not path.exists():
        raise GeneratorError(f"checkpoint {path} does not exist")
    files = checkpoint_files(path)
    if not files:
        raise GeneratorError(f"checkpoint {path} holds no files")
    digest = hashlib.sha256()
    for (name, _), file_hash in zip(files, file_digests([file for _, file in files], on_hashing)):
        digest.update(f"{name}\0{file_hash}\n".encode())
    return digest.hexdigest()


def pixel_settings(family: str, *, num_inference_steps: int, guidance_scale: float, resolution: int,
                   batch_invariant: bool) -> dict:
    """The generation settings that change this family's pixels."""
    if not get_family(family).samples:
        return {"resolution": resolution}
    return {
        "num_inference_steps": num_inference_steps,
        "guidance_scale": float(guidance_scale),
        "resolution": resolution,
        "batch_invariant": batch_invariant,
    }


def method_identity(*, family: str, params: dict, checkpoint_hash: str, pixel_settings: dict) -> str:
    payload = {"family": family, "params": params, "checkpoint": checkpoint_hash, "settings": pixel_settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def method_get_or_create(*, family: str, params: dict, checkpoint: str, checkpoint_hash: str,
                         pixel_settings: dict) -> Method:
    identity = method_identity(family=family, params=params, checkpoint_hash=checkpoint_hash,
                               pixel_settings=pixel_settings)
    method = Method.objects.filter(identity=identity).first()
    if method is not None:
        return method
    try:
        with transaction.atomic():
            return Method.objects.create(
                identity=identity,
                family=family,
                params=params,
                checkpoint=checkpoint,
                checkpoint_hash=checkpoint_hash,
                num_inference_steps=pixel_settings.get("num_inference_steps"),
                guidance_scale=pixel_settings.get("guidance_scale"),
                resolution=pixel_settings["resolution"],
                batch_invariant=pixel_settings.get("batch_invariant", True),
            )
    except IntegrityError:  # another evaluate created it a moment ago
        return Method.objects.get(identity=identity)


def method_spec(method: Method) -> MethodSpec:
    """The one place a Method becomes what the generators library builds."""
    return MethodSpec(family=method.family, params=method.params, checkpoint=resolve_checkpoint(method.checkpoint) or None)


def method_generation_settings(method: Method) -> GenerationSettings:
    defaults = GenerationSettings()
    return GenerationSettings(
        num_inference_steps=method.num_inference_steps or defaults.num_inference_steps,
        guidance_scale=defaults.guidance_scale if method.guidance_scale is None else method.guidance_scale,
        resolution=method.resolution,
    )


def method_pixel_settings(method: Method) -> dict:
    """The settings in the method's identity, as recorded with each output."""
    return pixel_settings(
        method.family,
        num_inference_steps=method.num_inference_steps,
        guidance_scale=method.guidance_scale or 0.0,
        resolution=method.resolution,
        batch_invariant=method.batch_invariant,
    )


def method_check_checkpoint(method: Method) -> None:
    """Refuse to generate when the weights at the method's path are no longer the ones its
    identity was made from: retrained weights must never be mixed with the old images."""
    if not method.checkpoint_hash:
        return  # no checkpoint, or a row from before identities existed
    path = Path(resolve_checkpoint(method.checkpoint))
    if not path.exists():
        return  # the loader says what is missing and where
    current = checkpoint_identity(path)
    if current != method.checkpoint_hash:
        raise GeneratorError(
            f"the checkpoint at {path} changed since this method was queued (content "
            f"{method.checkpoint_hash[:12]}, now {current[:12]}); its images would mix two sets of "
            f"weights. Run `evaluate` on the experiment file again: the new weights are a new method"
        )
