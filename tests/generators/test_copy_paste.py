import numpy as np
import pytest
from PIL import Image

from generators.copy_paste import CopyPasteGenerator
from generators.images import Rect, largest_inscribed_rectangle, prepare_canvas
from generators.types import GenerationSettings, GeneratorError, InpaintRequest


def irregular_request() -> InpaintRequest:
    """A 90 x 60 scene whose mask is a 40 x 30 box plus a thin arm and a stray pixel."""
    rng = np.random.default_rng(7)
    scene = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    reference = Image.fromarray(rng.integers(0, 256, (33, 21, 3), dtype=np.uint8))
    mask = np.zeros((60, 90), dtype=np.uint8)
    mask[10:40, 20:60] = 255  # rows 10..39, cols 20..59
    mask[40:58, 30:34] = 255
    mask[2, 80] = 255
    return InpaintRequest("irregular", scene, Image.fromarray(mask), reference, seed=0)


def test_reference_fills_exactly_the_largest_rectangle_and_nothing_else():
    request = irregular_request()
    settings = GenerationSettings(resolution=90)  # 60 -> 90 rows, 90 columns unchanged
    (image,) = CopyPasteGenerator().generate([request], settings)

    scene, mask = prepare_canvas(request, settings.resolution)
    rect = largest_inscribed_rectangle(np.asarray(mask) > 0)
    assert rect == Rect(top=15, left=20, height=45, width=40)  # the box, rows scaled by 1.5

    out = np.asarray(image)
    assert image.mode == "RGB" and image.size == (90, 90)
    expected_patch = request.reference.resize((rect.width, rect.height), Image.Resampling.BICUBIC)
    assert np.array_equal(out[rect.top : rect.bottom, rect.left : rect.right], np.asarray(expected_patch))

    outside = np.ones(out.shape[:2], dtype=bool)
    outside[rect.top : rect.bottom, rect.left : rect.right] = False
    assert np.array_equal(out[outside], np.asarray(scene)[outside])


def test_batch_order_and_seed_do_not_matter():
    request = irregular_request()
    other = InpaintRequest("other", request.scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                           request.mask, request.reference, seed=9)
    settings = GenerationSettings(resolution=64)
    generator = CopyPasteGenerator()
    together = generator.generate([other, request], settings)
    alone = generator.generate([request], settings)
    assert np.array_equal(np.asarray(together[1]), np.asarray(alone[0]))
    assert not np.array_equal(np.asarray(together[0]), np.asarray(together[1]))


def test_describe_and_params():
    description = CopyPasteGenerator().describe()
    assert description["family"] == "copy_paste"
    assert description["params"] == {}
    assert set(description["versions"]) == {"numpy", "pillow"}
    with pytest.raises(GeneratorError, match="unknown parameter.*'encoder'.*allowed parameters: none"):
        CopyPasteGenerator({"encoder": "clip_cls"})
