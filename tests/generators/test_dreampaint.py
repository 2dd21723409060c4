"""DreamPaint: per-product masked DreamBooth on a tiny Stable Diffusion inpainting model."""
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from generators.dreampaint import (
    DreamPaintGenerator,
    FineTuneStopped,
    Recipe,
    _prepared,
    encode_prompt,
    fine_tune,
    instance_prompt,
    load_base,
    load_product_images,
    product_mask,
    read_manifest,
    step_loss,
)
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

SETTINGS = GenerationSettings(num_inference_steps=3, guidance_scale=5.0, resolution=64)
PROMPT = instance_prompt("shoe")


def catalogue_photo(seed: int) -> Image.Image:
    """A product on a plain white background, as catalogue photos are shot."""
    pixels = np.full((64, 64, 3), 250, np.uint8)
    pixels[16:48, 20:44] = np.random.RandomState(seed).randint(0, 200, (32, 24, 3))
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from generators.tiny import build_tiny_sd_inpainting

    return build_tiny_sd_inpainting(tmp_path_factory.mktemp("sd") / "sd_inpainting")


@pytest.fixture(scope="module")
def lora(base, tmp_path_factory):
    recipe = Recipe(mode="lora", steps=24, learning_rate=1e-2, rank=4, resolution=64)
    return fine_tune(base, [catalogue_photo(1), catalogue_photo(2)], recipe, tmp_path_factory.mktemp("ft") / "lora", prompt=PROMPT)


def request(seed=0):
    mask = np.zeros((64, 64), np.uint8)
    mask[12:44, 16:48] = 255
    return InpaintRequest("s", catalogue_photo(7), Image.fromarray(mask), catalogue_photo(1), seed)


def probe_losses(pipeline, recipe, steps=range(1, 9)) -> float:
    """The loss of the same draws (steps 1-8's images, masks, noise and timesteps)."""
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    embeds = encode_prompt(pipeline, PROMPT)
    prepared = _prepared([catalogue_photo(1), catalogue_photo(2)], recipe.resolution)
    with torch.no_grad():
        return float(np.mean([float(step_loss(pipeline, scheduler, embeds, prepared, recipe, step)) for step in steps]))


def test_the_loss_goes_down_over_the_steps(base, lora):
    recipe = Recipe(mode="lora", steps=24, learning_rate=1e-2, rank=4, resolution=64)
    before = probe_losses(load_base(base, "cpu", torch.float32), recipe)
    after = probe_losses(lora.pipeline, recipe)
    assert after < 0.9 * before, (before, after)
    assert len(lora.losses) == 24 and lora.resumed_from == 0


def test_the_adapter_changes_the_output_and_reloads_to_the_same_image(base, lora):
    generator = DreamPaintGenerator(base, params={"mode": "lora"})
    with pytest.raises(GeneratorError, match="needs a product's fine-tuning"):
        generator.generate([request()], SETTINGS)
    canvas = dict(prompt=[PROMPT], image=[request().scene.resize((64, 64))], mask_image=[request().mask],
                  height=64, width=64, num_inference_steps=3, guidance_scale=5.0)
    base_image = np.asarray(generator.pipeline(**canvas, generator=[torch.Generator().manual_seed(0)]).images[0])
    generator.use_fine_tune(lora.path)
    assert generator.prompt == PROMPT == read_manifest(lora.path)["prompt"]
    tuned = np.asarray(generator.generate([request()], SETTINGS)[0])
    assert not np.array_equal(tuned, base_image)
    # The weights in memory at the end of the fine-tuning draw the image the saved ones do.
    lora.pipeline.unet.eval()
    in_memory = np.asarray(lora.pipeline(**canvas, generator=[torch.Generator().manual_seed(0)]).images[0])
    assert np.array_equal(in_memory, tuned)
    again = DreamPaintGenerator(base, params={"mode": "lora"})
    again.use_fine_tune(lora.path)
    assert np.array_equal(np.asarray(again.generate([request()], SETTINGS)[0]), tuned)


def test_an_interrupted_fine_tuning_resumes_to_the_same_weights(base, tmp_path):
    recipe = Recipe(mode="lora", steps=6, learning_rate=1e-3, rank=4, resolution=64, save_every=2)
    images = [catalogue_photo(3)]  # one image is enough (and allowed)
    whole = fine_tune(base, images, recipe, tmp_path / "whole", prompt=PROMPT)
    seen = []
    with pytest.raises(FineTuneStopped):
        fine_tune(base, images, recipe, tmp_path / "cut", prompt=PROMPT,
                  on_step=lambda step, loss: seen.append(step) or step < 3)
    assert seen == [1, 2, 3]
    assert not (tmp_path / "cut").exists(), "a half-trained adapter must never be where a generation job looks"
    assert (tmp_path / "cut.partial" / "progress.pt").is_file()
    resumed = fine_tune(base, images, recipe, tmp_path / "cut", prompt=PROMPT)
    assert resumed.resumed_from == 3
    assert resumed.losses == whole.losses
    assert not (tmp_path / "cut.partial").exists()
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "whole/pytorch_lora_weights.safetensors"), load_file(tmp_path / "cut/pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_progress_of_another_recipe_is_not_resumed(base, tmp_path):
    images = [catalogue_photo(3)]
    first = Recipe(mode="lora", steps=4, learning_rate=1e-3, rank=4, resolution=64, save_every=1)
    with pytest.raises(FineTuneStopped):
        fine_tune(base, images, first, tmp_path / "out", prompt=PROMPT, on_step=lambda step, loss: step < 2)
    other = Recipe(mode="lora", steps=4, learning_rate=5e-4, rank=4, resolution=64, save_every=1)
    assert fine_tune(base, images, other, tmp_path / "out", prompt=PROMPT).resumed_from == 0


def test_full_mode_trains_and_saves_the_whole_unet(base, tmp_path):
    recipe = Recipe(mode="full", steps=3, learning_rate=1e-4, resolution=64)
    result = fine_tune(base, [catalogue_photo(4)], recipe, tmp_path / "full", prompt=PROMPT)
    assert (tmp_path / "full/unet/config.json").is_file()
    generator = DreamPaintGenerator(base, params={"mode": "full"})
    generator.use_fine_tune(result.path)
    image = np.asarray(generator.generate([request()], SETTINGS)[0])
    assert image.shape == (64, 64, 3)
    assert read_manifest(result.path)["mode"] == "full"


def test_lora_is_much_smaller_than_full(lora, base, tmp_path):
    full = fine_tune(base, [catalogue_photo(4)], Recipe(mode="full", steps=1, resolution=64), tmp_path / "full", prompt=PROMPT)
    assert lora.size_bytes * 20 < full.size_bytes


def test_product_mask_finds_the_product_on_its_background():
    mask = product_mask(catalogue_photo(0))
    assert mask[16:48, 20:44].mean() > 0.95 and mask[:16].mean() == 0 and mask[:, :20].mean() == 0
    assert product_mask(Image.new("RGB", (32, 32), (10, 200, 30))).all()  # nothing stands out: all of it


def test_bad_products_are_named(tmp_path):
    with pytest.raises(GeneratorError, match="product 'shoe-1' has no images to fine-tune on"):
        load_product_images([], "shoe-1")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    catalogue_photo(0).save(tmp_path / "good.png")
    with pytest.raises(GeneratorError, match=rf"product 'shoe-2': unreadable image\(s\): {broken}: UnidentifiedImageError"):
        load_product_images([tmp_path / "good.png", broken], "shoe-2")


def test_recipe_hash_ignores_how_often_progress_is_saved():
    assert Recipe(save_every=1).hash() == Recipe(save_every=50).hash() != Recipe(steps=401).hash()
    assert Recipe.from_params({"mode": "full", "steps": 3, "unknown": 1}).mode == "full"


def test_switching_products_leaves_nothing_of_the_previous_one(base, lora, tmp_path):
    other = fine_tune(base, [catalogue_photo(5)], Recipe(mode="lora", steps=6, learning_rate=1e-2, rank=4, resolution=64),
                      tmp_path / "other", prompt=instance_prompt("bag"))
    generator = DreamPaintGenerator(base, params={"mode": "lora"})
    generator.use_fine_tune(lora.path)
    first = np.asarray(generator.generate([request()], SETTINGS)[0])
    generator.use_fine_tune(other.path)
    assert generator.prompt == instance_prompt("bag")
    second = np.asarray(generator.generate([request()], SETTINGS)[0])
    fresh = DreamPaintGenerator(base, params={"mode": "lora"})
    fresh.use_fine_tune(other.path)
    assert np.array_equal(second, np.asarray(fresh.generate([request()], SETTINGS)[0]))  # no trace of the first
    generator.use_fine_tune(lora.path)
    assert np.array_equal(first, np.asarray(generator.generate([request()], SETTINGS)[0]))
    assert not np.array_equal(first, second)
    with pytest.raises(GeneratorError, match="is not a finished DreamPaint fine-tuning"):
        generator.use_fine_tune(tmp_path / "absent")
    with pytest.raises(GeneratorError, match="needs a product's fine-tuning"):  # not the previous product's
        generator.generate([request()], SETTINGS)
