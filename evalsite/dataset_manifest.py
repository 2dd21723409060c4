"""Reading and checking a dataset folder's manifest.csv (DESIGN.md section 2).

Everything is checked before anything is written: a manifest with one bad row imports
nothing, and the error lists every problem with its line, sample and file.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

REQUIRED_COLUMNS = ("sample_id", "scene", "mask", "reference")
OPTIONAL_COLUMNS = ("ground_truth", "product_id", "caption", "category")
IMAGE_COLUMNS = ("scene", "mask", "reference", "ground_truth")
MASK_THRESHOLD = 128


class ManifestError(Exception):
    def __init__(self, manifest: Path, problems: list[str]):
        self.manifest = manifest
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{manifest}: {len(problems)} problem(s), nothing was imported:\n{listed}")


@dataclass
class ManifestRow:
    line: int
    sample_id: str
    files: dict[str, Path]  # image column -> absolute path (ground_truth only when given)
    product_id: str = ""
    caption: str = ""
    category: str = ""
    width: int = 0
    height: int = 0
    mask_was_binary: bool = True


@dataclass
class Manifest:
    path: Path
    rows: list[ManifestRow]
    warnings: list[str] = field(default_factory=list)
    content_hash: str = ""


def read_manifest(folder: Path | str) -> Manifest:
    folder = Path(folder)
    path = folder / "manifest.csv" if folder.is_dir() else folder
    if not path.is_file():
        raise ManifestError(path, [f"no manifest.csv found (expected columns: {', '.join(REQUIRED_COLUMNS)})"])
    problems: list[str] = []
    warnings: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            # reader.line_num is the file line where a record ends (blank lines and quoted
            # multi-line captions make it differ from the record count).
            raw_rows = [(reader.line_num, record) for record in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(path, [f"not a readable UTF-8 CSV file: {exc}"]) from None

    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            path,
            [f"header is missing column(s) {', '.join(missing)}; found {', '.join(header) or 'nothing'}; "
             f"required: {', '.join(REQUIRED_COLUMNS)}; optional: {', '.join(OPTIONAL_COLUMNS)}"],
        )
    extra = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        warnings.append(f"{path.name}: ignored unknown column(s): {', '.join(extra)}")
    if not raw_rows:
        raise ManifestError(path, ["no sample rows below the header"])

    rows: list[ManifestRow] = []
    first_line_of: dict[str, int] = {}
    for line, raw in raw_rows:
        row_problems, row = _check_row(path.parent, line, raw, warnings)
        if row is not None and row.sample_id in first_line_of:
            row_problems.append(
                f"line {line}: duplicate sample_id {row.sample_id!r} (first used on line {first_line_of[row.sample_id]})"
            )
        elif row is not None:
            first_line_of[row.sample_id] = line
        problems.extend(row_problems)
        if row is not None and not row_problems:
            rows.append(row)
    if problems:
        raise ManifestError(path, problems)
    manifest = Manifest(path=path, rows=rows, warnings=warnings)
    manifest.content_hash = _content_hash(manifest)
    return manifest


def _check_row(root: Path, line: int, raw: dict, warnings: list[str]):
    def cell(name):
        return (raw.get(name) or "").strip()

    sample_id = cell("sample_id")
    where = f"line {line} (sample {sample_id!r})" if sample_id else f"line {line}"
    problems = []
    if not sample_id:
        problems.append(f"line {line}: sample_id is empty")
    elif not _usable_as_name(sample_id):
        problems.append(
            f"{where}: sample_id {sample_id!r} cannot name a file in exports; expected letters, digits or "
            f"'-', '_', '.' (not '.' or '..' alone, no control characters)"
        )
    files: dict[str, Path] = {}
    for column in IMAGE_COLUMNS:
        value = cell(column)
        if not value:
            if column != "ground_truth":
                problems.append(f"{where}: column {column!r} is empty; expected an image path relative to the manifest")
            continue
        file = (root / value).resolve()
        if not file.is_file():
            problems.append(f"{where}: {column} file {value!r} does not exist (looked for {file})")
            continue
        files[column] = file
    if problems:
        return problems, None

    sizes = {}
    mask_array = None
    for column, file in files.items():
        try:
            with Image.open(file) as image:
                image.load()
                sizes[column] = image.size
                if column == "mask":
                    mask_array = np.asarray(image.convert("L"))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            problems.append(f"{where}: {column} file {file.name!r} is not a readable image ({exc})")
    if problems:
        return problems, None

    if sizes["mask"] != sizes["scene"]:
        problems.append(
            f"{where}: mask {files['mask'].name!r} is {_wh(sizes['mask'])} but scene "
            f"{files['scene'].name!r} is {_wh(sizes['scene'])}; expected the same size"
        )
    filled = mask_array >= MASK_THRESHOLD
    if not filled.any():
        problems.append(
            f"{where}: mask {files['mask'].name!r} is empty; expected white (255) where the product goes"
        )
    binary = bool(np.isin(mask_array, (0, 255)).all())
    if not binary and not problems:
        warnings.append(
            f"{where}: mask {files['mask'].name!r} is not binary "
            f"({len(np.unique(mask_array))} grey levels); thresholded at {MASK_THRESHOLD}"
        )
    row = ManifestRow(
        line=line,
        sample_id=sample_id,
        files=files,
        product_id=cell("product_id"),
        caption=cell("caption"),
        category=cell("category"),
        width=sizes["scene"][0],
        height=sizes["scene"][1],
        mask_was_binary=binary,
    )
    return problems, row


def _usable_as_name(sample_id: str) -> bool:
    """Exports and tools name files after sample ids: an id that sanitises to nothing, or
    to '.' or '..', would collide or escape its folder."""
    if any(ord(c) < 32 for c in sample_id):
        return False
    cleaned = re.sub(r"[^-\w.]", "", sample_id.strip().replace(" ", "_"))
    return cleaned not in ("", ".", "..")


def _wh(size) -> str:
    return f"{size[0]}x{size[1]}"


def _content_hash(manifest: Manifest) -> str:
    digest = hashlib.sha256()
    for row in sorted(manifest.rows, key=lambda r: r.sample_id):
        digest.update(repr((row.sample_id, row.product_id, row.caption, row.category)).encode())
        for column in IMAGE_COLUMNS:
            file = row.files.get(column)
            digest.update(column.encode())
            if file is not None:
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
