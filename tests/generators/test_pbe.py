import shutil

import numpy as np
import pytest
import torch
from diffusers import PaintByExamplePipeline
from PIL import Image

from generators.pbe import PbeGenerator, load_pbe_pipeline
from generators.types import GenerationSettings, GeneratorError

SETTINGS = GenerationSettings(num_inference_steps=2, guidance_scale=5.0, resolution=64)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def direct_pipeline(generator: PbeGenerator) -> PaintByExamplePipeline:
    """The library's own pipeline, built by the test from the loaded components."""
    loaded = generator.pipeline
    pipeline = PaintByExamplePipeline(
        vae=loaded.vae,
        image_encoder=loaded.image_encoder,
        unet=loaded.unet,
        scheduler=loaded.scheduler,
        safety_checker=None,
        feature_extractor=loaded.feature_extractor,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def direct_call(pipeline, scenes, masks, references, seeds):
    return pipeline(
        example_image=references,
        image=scenes,
        mask_image=masks,
        num_inference_steps=SETTINGS.num_inference_steps,
        guidance_scale=SETTINGS.guidance_scale,
        generator=[torch.Generator().manual_seed(seed) for seed in seeds],
    ).images


def test_image_equals_the_library_pipeline_called_directly(tiny_pbe_generator, make_request):
    request = make_request(11)  # already a 64 px canvas with a binary mask
    (ours,) = tiny_pbe_generator.generate([request], SETTINGS)
    (theirs,) = direct_call(
        direct_pipeline(tiny_pbe_generator), [request.scene], [request.mask], [request.reference], [11]
    )
    assert ours.size == (64, 64) and ours.mode == "RGB"
    assert np.array_equal(pixels(ours), pixels(theirs))


def test_inputs_of_another_size_go_through_the_canvas(tiny_pbe_generator, make_request):
    request = make_request(12, size=(96, 80), box=(20, 15, 70, 60))
    (ours,) = tiny_pbe_generator.generate([request], SETTINGS)
    scene = request.scene.resize((64, 64), Image.Resampling.BICUBIC)
    mask = request.mask.resize((64, 64), Image.Resampling.NEAREST)
    (theirs,) = direct_call(direct_pipeline(tiny_pbe_generator), [scene], [mask], [request.reference], [12])
    assert ours.size == (64, 64)
    assert np.array_equal(pixels(ours), pixels(theirs))


def test_same_seed_same_image_whatever_the_batch(tiny_pbe_generator, make_request):
    requests = [make_request(seed, box=(8 + seed, 6, 56, 50 - seed)) for seed in (1, 2, 3)]
    batch = [pixels(image) for image in tiny_pbe_generator.generate(requests, SETTINGS)]
    alone = [pixels(tiny_pbe_generator.generate([request], SETTINGS)[0]) for request in requests]
    swapped = [pixels(image) for image in tiny_pbe_generator.generate(requests[::-1], SETTINGS)][::-1]
    for index in range(3):
        assert np.array_equal(batch[index], alone[index]), f"request {index}: batch of 3 vs alone"
        assert np.array_equal(swapped[index], alone[index]), f"request {index}: order swapped vs alone"
    assert not np.array_equal(batch[0], batch[1])


def test_seed_changes_the_image(tiny_pbe_generator, make_request):
    request = make_request(4)
    reseeded = type(request)(**{**request.__dict__, "seed": 5})
    first, again, other = tiny_pbe_generator.generate([request, request, reseeded], SETTINGS)
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))


def test_batched_mode_is_one_pipeline_call(tiny_pbe_checkpoint, tiny_pbe_generator, make_request):
    """batch_invariant=False runs one batched call: exactly the library's batched call, and
    within a rounding unit or two of the per-request images (batched kernels round
    differently; see PbeGenerator)."""
    batched = PbeGenerator(tiny_pbe_checkpoint, batch_invariant=False)
    requests = [make_request(seed) for seed in (21, 22, 23)]
    ours = [pixels(image) for image in batched.generate(requests, SETTINGS)]
    theirs = direct_call(
        direct_pipeline(batched),
        [r.scene for r in requests],
        [r.mask for r in requests],
        [r.reference for r in requests],
        [r.seed for r in requests],
    )
    invariant = tiny_pbe_generator.generate(requests, SETTINGS)
    for index in range(3):
        assert np.array_equal(ours[index], pixels(theirs[index]))
        difference = np.abs(ours[index].astype(int) - pixels(invariant[index]).astype(int))
        assert difference.max() <= 2


def test_describe_records_provenance(tiny_pbe_checkpoint, tiny_pbe_generator):
    description = tiny_pbe_generator.describe()
    assert description["family"] == "pbe"
    assert description["params"] == {"encoder": "clip_cls"}
    assert description["checkpoint"] == str(tiny_pbe_checkpoint.resolve())
    assert description["device"] == "cpu"
    assert description["dtype"] == "float32"
    assert description["scheduler"] == "PNDMScheduler"
    assert description["batch_invariant"] is True
    assert set(description["versions"]) == {"diffusers", "torch", "transformers"}
    assert description["versions"]["torch"].startswith(torch.__version__.split("+")[0])


def test_dtype_override(tiny_pbe_checkpoint, make_request):
    generator = PbeGenerator(tiny_pbe_checkpoint, dtype="bfloat16")
    assert generator.describe()["dtype"] == "bfloat16"
    assert generator.pipeline.unet.dtype == torch.bfloat16
    assert generator.pipeline.image_encoder.dtype == torch.bfloat16
    (image,) = generator.generate([make_request(1)], SETTINGS)
    assert image.size == (64, 64)


def test_resolution_must_suit_the_vae(tiny_pbe_generator, make_request):
    with pytest.raises(GeneratorError, match="resolution 60 must be a positive multiple of 8"):
        tiny_pbe_generator.generate([make_request(1)], GenerationSettings(resolution=60))


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ("vit", r"encoder = 'vit' is not allowed; allowed values: clip_cls, clip_all, dinov2"),
    ],
)
def test_bad_encoder_is_rejected_before_loading(encoder, message, tmp_path):
    # The checkpoint does not even exist: the parameter is checked first.
    with pytest.raises(GeneratorError, match=message):
        PbeGenerator(tmp_path / "absent", params={"encoder": encoder})


def test_missing_checkpoint_names_path_and_layout(tmp_path):
    absent = tmp_path / "no-such-checkpoint"
    with pytest.raises(GeneratorError) as error:
        load_pbe_pipeline(absent)
    message = str(error.value)
    assert str(absent) in message and "does not exist" in message
    assert "expected layout" in message and "unet/diffusion_pytorch_model.safetensors" in message


def test_missing_subfolder_names_what_is_missing(tiny_pbe_checkpoint, tmp_path):
    broken = tmp_path / "pbe"
    shutil.copytree(tiny_pbe_checkpoint, broken)
    shutil.rmtree(broken / "vae")
    (broken / "feature_extractor" / "preprocessor_config.json").unlink()
    with pytest.raises(GeneratorError) as error:
        load_pbe_pipeline(broken)
    message = str(error.value)
    assert str(broken) in message and "incomplete" in message
    missing = message.split("missing:")[1].split(";")[0]
    assert "vae/config.json" in missing and "feature_extractor/preprocessor_config.json" in missing
    assert "unet" not in missing
    assert "expected layout" in message


def test_corrupt_weights_and_unknown_scheduler_are_generator_errors(tiny_pbe_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_pbe_checkpoint, corrupt)
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GeneratorError, match=r"cannot load .*corrupt/unet"):
        load_pbe_pipeline(corrupt)

    odd_scheduler = tmp_path / "odd-scheduler"
    shutil.copytree(tiny_pbe_checkpoint, odd_scheduler)
    config = odd_scheduler / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"PNDMScheduler"', '"NoSuchScheduler"'))
    with pytest.raises(GeneratorError, match="'NoSuchScheduler' is not a diffusers scheduler"):
        load_pbe_pipeline(odd_scheduler)
