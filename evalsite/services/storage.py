"""Writing media files so that a reader never sees half a file."""
from __future__ import annotations

import io
import os
import time
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from PIL import Image

PARTIAL_SUFFIX = ".partial"


def save_png(name: str, image: Image.Image, *, storage=None) -> str:
    """Write `image` as PNG at exactly `name`, replacing what is there, atomically.

    On a filesystem the bytes go to a temp name beside the target and are renamed over
    it, so a killed worker leaves either the old file, the new file, or a *.partial file
    that `remove_partials` cleans up, never a truncated PNG under the real name. No fsync:
    the page cache outlives a killed process, and an output lost to a power cut is
    regenerated (its row is written after the rename, in the same way).
    """
    storage = storage or default_storage
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    if isinstance(storage, FileSystemStorage):
        target = storage.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temp = f"{target}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        with open(temp, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(temp, target)
        return name
    # Object stores write whole objects; delete first so the name is kept exactly.
    if storage.exists(name):
        storage.delete(name)
    return storage.save(name, ContentFile(buffer.getvalue()))


def remove_partials(folder: str, *, older_than: float, storage=None) -> int:
    """Delete temp files that killed writers left in `folder`, older than `older_than`
    seconds (a younger one may belong to a live writer); returns how many."""
    storage = storage or default_storage
    if not isinstance(storage, FileSystemStorage):
        return 0
    path = storage.path(folder)
    if not os.path.isdir(path):
        return 0
    removed = 0
    cutoff = time.time() - older_than
    for entry in os.listdir(path):
        file = os.path.join(path, entry)
        if entry.endswith(PARTIAL_SUFFIX):
            try:
                if os.stat(file).st_mtime < cutoff:
                    os.remove(file)
                    removed += 1
            except FileNotFoundError:
                pass  # its writer renamed or removed it meanwhile
    return removed


def open_image(name: str, *, storage=None) -> Image.Image:
    storage = storage or default_storage
    with storage.open(name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image
