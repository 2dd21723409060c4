"""Writing a command's output file whole or not at all."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from django.core.management.base import CommandError


def write_whole(path: Path, chunks: Iterable[str]) -> None:
    """Written beside the target, then renamed over it: a reader, or a failure half-way,
    never leaves a half-written file under the real name."""
    temp = path.with_name(f".{path.name}.partial")
    try:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
        temp.replace(path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
