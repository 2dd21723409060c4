"""The demo dataset: real photographs that ship inside scikit-image, no downloads.

Each sample masks an object in a photograph and uses a crop of that object as the
reference, with the untouched photograph as ground truth (the self-supervised setting
Paint by Example trains in); one sample puts a different product (scikit-image's logo)
into a scene and so has no ground truth, as in real try-all use.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class DemoSample:
    sample_id: str
    scene: str  # scikit-image sample name
    box: tuple[int, int, int, int]  # left, top, right, bottom of the region to fill
    shape: str  # "ellipse" or "rectangle"
    category: str
    caption: str
    reference: str | None = None  # another sample image as product; None = crop of the box


DEMO_SAMPLES = (
    DemoSample("coffee-cup", "coffee", (160, 10, 420, 262), "ellipse", "tableware", "an espresso cup on a saucer"),
    DemoSample("cat-face", "chelsea", (110, 30, 360, 290), "ellipse", "pet", "a tabby cat's face"),
    DemoSample("astronaut-helmet", "astronaut", (272, 330, 512, 512), "ellipse", "apparel", "a space helmet"),
    DemoSample("shuttle-model", "astronaut", (355, 0, 470, 290), "rectangle", "toy", "a space shuttle model"),
    DemoSample("launch-rocket", "rocket", (285, 115, 355, 420), "rectangle", "vehicle", "a rocket on its launch pad"),
    DemoSample("patch-logo", "astronaut", (128, 342, 216, 432), "ellipse", "apparel", "a logo patch", reference="logo"),
)


def _photograph(name: str) -> Image.Image:
    from skimage import data

    array = np.asarray(getattr(data, name)())
    image = Image.fromarray(array)
    if image.mode == "RGBA":  # logo: product photo on a white background
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def build_demo_dataset(folder: Path | str) -> Path:
    """Write scenes, masks, references, ground truths and manifest.csv into `folder`."""
    folder = Path(folder)
    for sub in ("scenes", "masks", "references", "ground_truth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in DEMO_SAMPLES:
        scene = _photograph(sample.scene)
        mask = Image.new("L", scene.size, 0)
        draw = ImageDraw.Draw(mask)
        box = (sample.box[0], sample.box[1], sample.box[2] - 1, sample.box[3] - 1)
        (draw.ellipse if sample.shape == "ellipse" else draw.rectangle)(box, fill=255)
        reference = _photograph(sample.reference) if sample.reference else scene.crop(sample.box)
        scene.save(folder / "scenes" / f"{sample.sample_id}.png")
        mask.save(folder / "masks" / f"{sample.sample_id}.png")
        reference.save(folder / "references" / f"{sample.sample_id}.png")
        ground_truth = ""
        if sample.reference is None:
            ground_truth = f"ground_truth/{sample.sample_id}.png"
            scene.save(folder / ground_truth)
        rows.append(
            {
                "sample_id": sample.sample_id,
                "scene": f"scenes/{sample.sample_id}.png",
                "mask": f"masks/{sample.sample_id}.png",
                "reference": f"references/{sample.sample_id}.png",
                "ground_truth": ground_truth,
                "product_id": sample.reference or sample.sample_id,
                "caption": sample.caption,
                "category": sample.category,
            }
        )
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder
