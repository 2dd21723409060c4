"""Region CLIP score: the crop, a direct CLIP computation on the same crops, and what a
perfect and a failed inpainting score."""
import numpy as np
import pytest
import torch
from PIL import Image

from metrics.clip_score import cosine_scores, mask_bbox, region_clip_scores, region_crop
from metrics.errors import MetricError
from metrics.extractors import ClipExtractor


def disk(size, center, radius):
    yy, xx = np.mgrid[: size[1], : size[0]]
    return (((xx - center[0]) ** 2 + (yy - center[1]) ** 2) <= radius**2).astype(np.uint8) * 255


def test_bbox_of_non_rectangular_edge_touching_and_one_pixel_masks():
    assert mask_bbox(disk((64, 48), (30, 20), 5)) == (25, 15, 36, 26)
    edge = np.zeros((48, 64), np.uint8)
    edge[40:, 50:] = 255  # touches the bottom and right edges
    assert mask_bbox(edge) == (50, 40, 64, 48)
    one = np.zeros((48, 64), np.uint8)
    one[0, 63] = 255
    assert mask_bbox(one) == (63, 0, 64, 1)
    grey = np.full((48, 64), 127, np.uint8)  # below the threshold: empty
    with pytest.raises(MetricError, match="empty"):
        mask_bbox(grey)


def test_a_scene_sized_mask_is_mapped_onto_the_square_canvas():
    output = np.zeros((64, 64, 3), np.uint8)
    output[32:48, 16:32] = 200
    mask = np.zeros((100, 200), np.uint8)  # the scene is 200 x 100; the canvas 64 x 64
    mask[50:75, 50:100] = 255
    crop = region_crop(output, mask)
    assert crop.shape == (16, 16, 3) and (crop == 200).all()
    one = np.zeros((64, 64), np.uint8)
    one[5, 7] = 255
    assert region_crop(output, one).shape == (1, 1, 3)


def direct_clip_scores(weights, crops, references):
    """CLIP by hand: PIL bicubic 224 x 224, CLIP normalisation, the vision tower and its
    projection (not get_image_features), cosine x 100."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(str(weights / "clip-vit-base-patch32"), local_files_only=True).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)

    def embed(images):
        arrays = [np.asarray(Image.fromarray(i).resize((224, 224), Image.Resampling.BICUBIC), np.float32) for i in images]
        pixels = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0 - mean) / std
        with torch.no_grad():
            pooled = model.vision_model(pixel_values=pixels).pooler_output
            return torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1)

    return (100 * (embed(crops) * embed(references)).sum(-1)).double().numpy()


def test_region_clip_score_equals_a_direct_clip_computation(metric_weights):
    rng = np.random.RandomState(0)
    outputs = [rng.randint(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    masks = [disk((64, 64), (20 + 5 * i, 30), 6 + i) for i in range(5)]
    masks[4] = np.zeros((64, 64), np.uint8)
    masks[4][0, 0] = 255  # one pixel, at the corner
    references = [rng.randint(0, 255, (40 + i, 30, 3), dtype=np.uint8) for i in range(5)]
    ours = region_clip_scores(ClipExtractor(metric_weights), outputs, masks, references)
    crops = [region_crop(o, m) for o, m in zip(outputs, masks)]
    direct = direct_clip_scores(metric_weights, crops, references)
    assert np.allclose(ours, direct, atol=1e-4), (ours, direct)
    assert ours.shape == (5,) and np.all(np.abs(ours) <= 100 + 1e-6)


def test_copy_paste_on_a_rectangular_mask_scores_about_100_and_noise_scores_lower(metric_weights):
    from generators.copy_paste import CopyPasteGenerator
    from generators.types import GenerationSettings, InpaintRequest

    rng = np.random.RandomState(1)
    scene = Image.fromarray(rng.randint(0, 255, (96, 128, 3), dtype=np.uint8))
    mask_array = np.zeros((96, 128), np.uint8)
    mask_array[20:70, 30:90] = 255
    mask = Image.fromarray(mask_array)
    yy, xx = np.mgrid[:80, :60]
    reference = Image.fromarray(np.stack([xx * 4, yy * 3, (xx + yy) * 2], axis=2).astype(np.uint8))
    (output,) = CopyPasteGenerator().generate(
        [InpaintRequest("s", scene, mask, reference, seed=0)], GenerationSettings(resolution=128)
    )
    noisy = np.array(output)
    box = mask_bbox(np.asarray(mask.resize(output.size, Image.Resampling.NEAREST)))
    noisy[box[1]:box[3], box[0]:box[2]] = rng.randint(0, 255, (box[3] - box[1], box[2] - box[0], 3))
    extractor = ClipExtractor(metric_weights)
    pasted, noise = region_clip_scores(extractor, [output, noisy], [mask, mask], [reference, reference])
    assert pasted > 99.0, pasted  # the crop is the reference, resized
    assert noise < pasted - 1.0, (noise, pasted)


def test_cosine_scores_are_100_times_the_cosine():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[1.0, 0.0], [-1.0, -1.0], [0.0, 3.0]])
    assert np.allclose(cosine_scores(a, b), [100.0, -100.0, 0.0])
