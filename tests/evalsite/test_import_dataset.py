import csv
import os
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from evalsite.dataset_manifest import ManifestError
from evalsite.models import Dataset, Sample
from evalsite.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def write_dataset(folder: Path, rows: list[dict], header=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = header or ["sample_id", "scene", "mask", "reference", "ground_truth", "category"]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def image(folder: Path, name: str, size=(48, 32), color=(200, 30, 30), mode="RGB") -> str:
    Image.new(mode, size, color).save(folder / name)
    return name


def box_mask(folder: Path, name: str, size=(48, 32), box=(8, 8, 30, 24), values=(0, 255)) -> str:
    array = np.full((size[1], size[0]), values[0], np.uint8)
    array[box[1]:box[3], box[0]:box[2]] = values[1]
    Image.fromarray(array).save(folder / name)
    return name


def good_row(folder: Path, sample_id: str) -> dict:
    return {
        "sample_id": sample_id,
        "scene": image(folder, f"{sample_id}-scene.png"),
        "mask": box_mask(folder, f"{sample_id}-mask.png"),
        "reference": image(folder, f"{sample_id}-ref.png", size=(20, 20), color=(0, 0, 255)),
        "ground_truth": image(folder, f"{sample_id}-gt.png"),
        "category": "shoe",
    }


def media_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


def test_demo_dataset_imports_with_every_field(media_root, demo_dataset_dir):
    result = dataset_import(path=demo_dataset_dir, name="demo")
    assert result.created and result.warnings == []
    samples = Sample.objects.filter(dataset=result.dataset)
    assert samples.count() == 6
    cup = samples.get(sample_id="coffee-cup")
    assert (cup.width, cup.height) == (600, 400)
    assert cup.category == "tableware" and cup.caption
    assert cup.ground_truth and not samples.get(sample_id="patch-logo").ground_truth
    with Image.open(media_root / cup.mask.name) as mask:
        assert set(np.unique(np.asarray(mask))) == {0, 255}
    with Image.open(media_root / cup.preview.name) as preview:
        assert max(preview.size) <= 512


def test_reimporting_identical_content_is_a_noop(media_root, demo_dataset_dir):
    first = dataset_import(path=demo_dataset_dir, name="demo")
    files_before = sorted(media_files(media_root))
    second = dataset_import(path=demo_dataset_dir, name="demo")
    assert not second.created and second.dataset.pk == first.dataset.pk
    assert Dataset.objects.count() == 1 and Sample.objects.count() == 6
    assert sorted(media_files(media_root)) == files_before


def test_changed_content_becomes_a_new_version(media_root, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_dataset(folder, [good_row(folder, "a")])
    first = dataset_import(path=folder, name="shoes")
    image(folder, "a-scene.png", color=(10, 200, 10))
    second = dataset_import(path=folder, name="shoes")
    assert second.created and second.dataset.content_hash != first.dataset.content_hash
    assert Dataset.objects.filter(name="shoes").count() == 2


def test_every_problem_is_reported_with_its_line_and_nothing_is_imported(media_root, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    rows = [good_row(folder, "ok")]
    missing = good_row(folder, "missing")
    missing["reference"] = "nowhere/ref.png"
    rows.append(missing)
    not_image = good_row(folder, "notimage")
    (folder / "notimage-scene.png").write_text("this is not a png")
    rows.append(not_image)
    wrong_size = good_row(folder, "wrongsize")
    wrong_size["mask"] = box_mask(folder, "wrongsize-mask.png", size=(40, 40))
    rows.append(wrong_size)
    empty = good_row(folder, "empty")
    empty["mask"] = box_mask(folder, "empty-mask.png", values=(0, 0))
    rows.append(empty)
    rows.append(good_row(folder, "ok"))  # duplicate id
    write_dataset(folder, rows)

    with pytest.raises(ManifestError) as caught:
        dataset_import(path=folder, name="bad")
    message = str(caught.value)
    assert "nothing was imported" in message
    assert "line 3 (sample 'missing'): reference file 'nowhere/ref.png' does not exist" in message
    assert "line 4 (sample 'notimage'): scene file 'notimage-scene.png' is not a readable image" in message
    assert "line 5 (sample 'wrongsize'): mask 'wrongsize-mask.png' is 40x40 but scene 'wrongsize-scene.png' is 48x32" in message
    assert "line 6 (sample 'empty'): mask 'empty-mask.png' is empty" in message
    assert "line 7: duplicate sample_id 'ok' (first used on line 2)" in message
    assert len(caught.value.problems) == 5
    assert Dataset.objects.count() == 0 and Sample.objects.count() == 0
    assert media_files(media_root) == []


def test_non_binary_mask_is_thresholded_with_a_warning(media_root, tmp_path):
    folder = tmp_path / "soft"
    folder.mkdir()
    row = good_row(folder, "soft")
    array = np.zeros((32, 48), np.uint8)
    array[8:24, 8:30] = 200  # filled, but not 255
    array[8:24, 30:34] = 100  # feathered edge below the threshold
    Image.fromarray(array).save(folder / "soft-mask.png")
    write_dataset(folder, [row])
    result = dataset_import(path=folder, name="soft")
    assert len(result.warnings) == 1
    assert "line 2 (sample 'soft'): mask 'soft-mask.png' is not binary (3 grey levels); thresholded at 128" in result.warnings[0]
    sample = Sample.objects.get()
    stored = np.asarray(Image.open(media_root / sample.mask.name))
    assert set(np.unique(stored)) == {0, 255}
    assert (stored == 255).sum() == 16 * 22


def test_missing_columns_are_named(media_root, tmp_path):
    folder = write_dataset(tmp_path / "cols", [{"sample_id": "a", "scene": "x.png"}], header=["sample_id", "scene"])
    with pytest.raises(ManifestError, match="missing column\\(s\\) mask, reference"):
        dataset_import(path=folder, name="cols")


def test_failure_while_writing_leaves_nothing_behind(media_root, tmp_path, monkeypatch):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_dataset(folder, [good_row(folder, "a"), good_row(folder, "b")])
    # The second sample's scene becomes unreadable after validation: the import must roll
    # back the first sample's rows and files too.
    from evalsite.services import datasets

    real = datasets._store_row_images
    calls = []

    def store_then_fail(stem, files, written):
        calls.append(stem)
        if len(calls) == 2:
            os.remove(files["scene"])
        return real(stem, files, written)

    monkeypatch.setattr(datasets, "_store_row_images", store_then_fail)
    with pytest.raises(FileNotFoundError):
        dataset_import(path=folder, name="half")
    assert Dataset.objects.count() == 0 and Sample.objects.count() == 0
    assert media_files(media_root) == []


def test_import_command_reports_errors_and_progress(media_root, tmp_path, demo_dataset_dir, capsys):
    call_command("import_dataset", str(demo_dataset_dir), name="demo")
    out = capsys.readouterr().out
    assert "imported demo@" in out and "(6 samples)" in out
    call_command("import_dataset", str(demo_dataset_dir), name="demo")
    assert "already imported with identical content" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CommandError, match="no manifest.csv found"):
        call_command("import_dataset", str(empty), name="x")
