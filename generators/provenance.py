"""Provenance helpers for describe(). No torch here."""
from __future__ import annotations

from functools import cache
from importlib import metadata


def library_versions(*distributions: str) -> dict[str, str]:
    return dict(_versions(distributions))


@cache  # reading package metadata costs milliseconds, and describe() runs every job
def _versions(distributions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())

