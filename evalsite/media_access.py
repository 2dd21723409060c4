"""Who may read which media file. Researchers (active users) read dataset images and
outputs; temp files of writers in progress are never served."""
from __future__ import annotations

from evalsite.services.storage import PARTIAL_SUFFIX

RESEARCHER_FOLDERS = ("datasets/", "outputs/")


def media_path_allowed(user, path: str) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return False  # hidden files, traversal, empty segments
    if path.endswith(PARTIAL_SUFFIX):
        return False
    return path.startswith(RESEARCHER_FOLDERS)
