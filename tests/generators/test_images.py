import numpy as np
import pytest
from PIL import Image

from generators.images import (
    Rect,
    binarize_mask,
    largest_inscribed_rectangle,
    mask_bbox,
    outline_mask,
    prepare_canvas,
)
from generators.types import GeneratorError, InpaintRequest


def brute_force_rectangle(mask: np.ndarray) -> Rect:
    """Every rectangle checked with an integral image; the documented tie-break: largest
    area, then smallest top, then smallest left, then greatest height."""
    n_rows, n_cols = mask.shape
    integral = np.zeros((n_rows + 1, n_cols + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    top, bottom, left, right = np.meshgrid(
        np.arange(n_rows), np.arange(n_rows + 1), np.arange(n_cols), np.arange(n_cols + 1),
        indexing="ij",
    )
    top, bottom, left, right = (a.ravel() for a in (top, bottom, left, right))
    proper = (bottom > top) & (right > left)
    top, bottom, left, right = top[proper], bottom[proper], left[proper], right[proper]
    height, width = bottom - top, right - left
    filled = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    inside = filled == height * width
    top, left, height, width = top[inside], left[inside], height[inside], width[inside]
    best = np.lexsort((-height, left, top, -(height * width)))[0]
    return Rect(int(top[best]), int(left[best]), int(height[best]), int(width[best]))


def random_masks():
    rng = np.random.default_rng(0)
    sizes = [(1, 1), (1, 17), (17, 1), (1, 40), (40, 1), (2, 7), (7, 2), (5, 5), (9, 13), (13, 9), (16, 16)]
    for n_rows, n_cols in sizes:
        for density in (0.3, 0.6, 0.85, 0.97):  # sparse noise
            yield rng.random((n_rows, n_cols)) < density
        for _ in range(4):  # blobs: unions of random ellipses
            rows, cols = np.mgrid[:n_rows, :n_cols]
            blob = np.zeros((n_rows, n_cols), dtype=bool)
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0, n_rows), rng.uniform(0, n_cols)
                ry, rx = rng.uniform(0.5, n_rows), rng.uniform(0.5, n_cols)
                blob |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
            yield blob


def awkward_masks():
    full = np.ones((6, 9), dtype=bool)
    single = np.zeros((7, 5), dtype=bool)
    single[4, 2] = True
    l_shape = np.zeros((8, 8), dtype=bool)
    l_shape[:, :2] = True
    l_shape[6:, :] = True
    ring = np.ones((9, 11), dtype=bool)
    ring[2:7, 3:8] = False
    staircase = np.tril(np.ones((10, 10), dtype=bool))
    checkerboard = (np.add.outer(np.arange(6), np.arange(7)) % 2) == 0
    tie = np.ones((3, 3), dtype=bool)  # a 2x3 and a 3x2 share the top-left corner
    tie[2, 2] = False
    return {
        "full": (full, Rect(0, 0, 6, 9)),
        "single_pixel": (single, Rect(4, 2, 1, 1)),
        "l_shape": (l_shape, Rect(0, 0, 8, 2)),  # ties the 2x8 bar: smaller top wins
        "ring": (ring, Rect(0, 0, 9, 3)),
        "staircase": (staircase, Rect(4, 0, 6, 5)),  # ties 5x6 at top 5
        "checkerboard": (checkerboard, Rect(0, 0, 1, 1)),
        "tie_prefers_taller": (tie, Rect(0, 0, 3, 2)),
    }


def test_inscribed_rectangle_matches_brute_force_on_random_masks():
    checked = 0
    for mask in random_masks():
        if not mask.any():
            continue
        assert largest_inscribed_rectangle(mask) == brute_force_rectangle(mask), mask.astype(int)
        checked += 1
    assert checked > 80


@pytest.mark.parametrize("name", list(awkward_masks()))
def test_inscribed_rectangle_on_awkward_masks(name):
    mask, expected = awkward_masks()[name]
    assert brute_force_rectangle(mask) == expected  # the hand-worked answer
    assert largest_inscribed_rectangle(mask) == expected


def test_inscribed_rectangle_accepts_0_255_arrays():
    mask = np.zeros((5, 6), dtype=np.uint8)
    mask[1:4, 2:6] = 255
    assert largest_inscribed_rectangle(mask) == Rect(1, 2, 3, 4)


@pytest.mark.parametrize(
    "mask", [np.zeros((4, 5), dtype=bool), np.zeros((0, 3), dtype=bool)], ids=["all_false", "zero_size"]
)
def test_inscribed_rectangle_rejects_empty_mask(mask):
    with pytest.raises(ValueError, match="empty"):
        largest_inscribed_rectangle(mask)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_inscribed_rectangle_rejects_non_2d(shape):
    with pytest.raises(ValueError, match="2-D"):
        largest_inscribed_rectangle(np.ones(shape, dtype=bool))


def test_binarize_mask_thresholds_and_reports_whether_binary():
    gray = Image.fromarray(np.array([[0, 127, 128, 255]], dtype=np.uint8))
    binary, was_binary = binarize_mask(gray)
    assert binary.mode == "L"
    assert np.asarray(binary).tolist() == [[0, 0, 255, 255]]
    assert was_binary is False

    again, was_binary = binarize_mask(binary)
    assert np.array_equal(np.asarray(again), np.asarray(binary))
    assert was_binary is True

    rgb = Image.fromarray(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8))
    binary, was_binary = binarize_mask(rgb, threshold=200)
    assert np.asarray(binary).tolist() == [[255, 0]]
    assert was_binary is True


def test_prepare_canvas_resizes_scene_bicubic_and_mask_nearest():
    rng = np.random.default_rng(3)
    scene = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    mask_pixels = np.zeros((50, 70), dtype=np.uint8)
    mask_pixels[10:30, 20:60] = 200  # not 255: must come out binary
    request = InpaintRequest("s", scene, Image.fromarray(mask_pixels), scene, seed=0)

    canvas_scene, canvas_mask = prepare_canvas(request, 32)

    assert canvas_scene.mode == "RGB" and canvas_scene.size == (32, 32)
    assert canvas_mask.mode == "L" and canvas_mask.size == (32, 32)
    expected_scene = scene.resize((32, 32), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(canvas_scene), np.asarray(expected_scene))
    expected_mask = Image.fromarray(np.where(mask_pixels >= 128, 255, 0).astype(np.uint8)).resize(
        (32, 32), Image.Resampling.NEAREST
    )
    assert np.array_equal(np.asarray(canvas_mask), np.asarray(expected_mask))
    assert set(np.unique(np.asarray(canvas_mask))) == {0, 255}


def test_prepare_canvas_is_identity_at_canvas_size(make_request):
    request = make_request(5)
    scene, mask = prepare_canvas(request, 64)
    assert np.array_equal(np.asarray(scene), np.asarray(request.scene))
    assert np.array_equal(np.asarray(mask), np.asarray(request.mask))


def test_prepare_canvas_rejects_mismatched_and_vanishing_masks(make_request):
    request = make_request(1)
    mismatched = InpaintRequest("bad-size", request.scene, request.mask.resize((32, 32)), request.reference, 0)
    with pytest.raises(GeneratorError, match="bad-size.*differs"):
        prepare_canvas(mismatched, 64)

    tiny_hole = np.zeros((64, 64), dtype=np.uint8)
    tiny_hole[5, 5] = 255  # one pixel: nearest-resizing to 8 px loses it
    vanishing = InpaintRequest("hole", request.scene, Image.fromarray(tiny_hole), request.reference, 0)
    with pytest.raises(GeneratorError, match="hole.*no white"):
        prepare_canvas(vanishing, 8)


def test_mask_bbox():
    pixels = np.zeros((10, 12), dtype=np.uint8)
    pixels[2, 3] = 255
    pixels[6, 9] = 255
    assert mask_bbox(Image.fromarray(pixels)) == Rect(2, 3, 5, 7)
    assert mask_bbox(pixels > 0).box == (3, 2, 10, 7)
    with pytest.raises(ValueError, match="empty"):
        mask_bbox(np.zeros((3, 3), dtype=bool))


def test_outline_mask_draws_inner_ring_only():
    rng = np.random.default_rng(4)
    scene = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    pixels = np.zeros((20, 24), dtype=np.uint8)
    pixels[4:15, 0:10] = 255  # touches the left border: outlined there too

    out = np.asarray(outline_mask(scene, Image.fromarray(pixels), color=(1, 2, 3), width=2))

    ring = np.zeros((20, 24), dtype=bool)
    ring[4:15, 0:10] = True
    ring[6:13, 2:8] = False
    assert (out[ring] == (1, 2, 3)).all()
    assert np.array_equal(out[~ring], np.asarray(scene)[~ring])
