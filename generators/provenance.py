"""Provenance helpers for describe(). No torch here."""
from __future__ import annotations

from importlib import metadata


def library_versions(*distributions: str) -> dict[str, str]:
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

