"""Diffuse to Choose: the model down to its shapes, the pipeline against PBE's, checkpoints."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from PIL import Image

from generators.checkpoints import check_dtc_checkpoint
from generators.dtc import (
    FUSIONS,
    DiffuseToChoosePipeline,
    DtcGenerator,
    DtcHintModel,
    build_dtc,
    fused_unet_forward,
    fusion_points,
    hint_images,
)
from generators.families import FAMILIES
from generators.images import largest_inscribed_rectangle, prepare_canvas
from generators.pbe import load_pbe_pipeline
from generators.tiny import tiny_dtc_pipeline
from generators.types import GenerationSettings, GeneratorError

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = GenerationSettings(num_inference_steps=3, guidance_scale=5.0, resolution=64)

# Stable Diffusion 1.5's UNet (runwayml/stable-diffusion-inpainting's unet/config.json), 9 channels.
SD15_UNET = dict(
    sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)


def unet_inputs(unet, batch=2, size=8, tokens=65, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, unet.config.in_channels, size, size, generator=generator)
    states = torch.randn(batch, tokens, unet.config.cross_attention_dim, generator=generator)
    return sample, torch.tensor(500), states


def randomise(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def hint_prediction(pipeline, sample, timestep, states):
    hint = pipeline.hint
    features = hint.features(sample, timestep, states)
    return fused_unet_forward(pipeline.unet, sample, timestep, states, features, hint.fusion_layers)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fresh_dtc_predicts_exactly_what_its_unet_does(fusion):
    pipeline = tiny_dtc_pipeline(0, fusion, trained=False)
    sample, timestep, states = unet_inputs(pipeline.unet)
    with torch.no_grad():
        expected = pipeline.unet(sample, timestep, encoder_hidden_states=states).sample
        fused = hint_prediction(pipeline, sample, timestep, states)
        assert torch.equal(fused, expected)
        # An odd latent size (5 -> 3 -> 6 without it) takes UNet2DConditionModel's upsample_size path.
        odd = unet_inputs(pipeline.unet, size=5)
        assert torch.equal(hint_prediction(pipeline, *odd), pipeline.unet(odd[0], odd[1], encoder_hidden_states=odd[2]).sample)

        randomise(pipeline.hint.fusion_layers)
        changed = hint_prediction(pipeline, sample, timestep, states)
    assert changed.shape == expected.shape
    assert (changed - expected).abs().max() > 1e-3


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_point_changes_the_prediction(fusion):
    """Every one of the fusion points is wired in: making any single one non-zero moves the output."""
    pipeline = tiny_dtc_pipeline(0, fusion, trained=False)
    sample, timestep, states = unet_inputs(pipeline.unet)
    with torch.no_grad():
        expected = pipeline.unet(sample, timestep, encoder_hidden_states=states).sample
        for index, layer in enumerate(pipeline.hint.fusion_layers):
            saved = {k: v.clone() for k, v in layer.state_dict().items()}
            randomise(layer, seed=index)
            assert not torch.equal(hint_prediction(pipeline, sample, timestep, states), expected), index
            layer.load_state_dict(saved)


def test_sd15_hint_encoder_gives_13_maps_shaped_like_the_unets_skips():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        hint = DtcHintModel(unet_config=dict(unet.config), fusion="film")
        sample = torch.empty(1, 9, 64, 64)
        states = torch.empty(1, 257, 768)
        features = hint.features(sample, 10, states)
        # The main UNet's own skips and mid block output, from its down path.
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=10))
        hidden = unet.conv_in(sample)
        skips = [hidden]
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                hidden, found = block(hidden_states=hidden, temb=emb, encoder_hidden_states=states)
            else:
                hidden, found = block(hidden_states=hidden, temb=emb)
            skips += found
        skips.append(unet.mid_block(hidden, emb, encoder_hidden_states=states))

    assert len(features) == len(skips) == 13
    assert [tuple(f.shape) for f in features] == [tuple(s.shape) for s in skips]
    assert [f.shape[1] for f in features] == [320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280]
    assert [f.shape[-1] for f in features] == [64, 64, 64, 32, 32, 32, 16, 16, 16, 8, 8, 8, 8]
    assert [width for width, _ in fusion_points(unet.config)] == [s.shape[1] for s in skips]
    for fusion in FUSIONS:
        with torch.device("meta"):
            layers = DtcHintModel(unet_config=dict(unet.config), fusion=fusion).fusion_layers
            assert len(layers) == 13
            for layer, skip, feature in zip(layers, skips, features):
                assert layer(skip, feature).shape == skip.shape


def test_cross_attention_can_be_kept_to_lower_resolutions():
    unet = tiny_dtc_pipeline(0, "film").unet
    hint = DtcHintModel(unet_config=dict(unet.config), fusion="cross_attention", cross_attention_min_level=1)
    kinds = [(type(layer).__name__, level) for layer, (_, level) in zip(hint.fusion_layers, fusion_points(unet.config))]
    # conv_in and the first block's resnet at full resolution; its downsampler, the second
    # block's resnet and the mid block one level down.
    assert kinds == [("AdditionFusion", 0)] * 2 + [("CrossAttentionFusion", 1)] * 3
    with pytest.raises(GeneratorError, match="fusion = 'concat' is not allowed"):
        DtcHintModel(unet_config=dict(unet.config), fusion="concat")


def test_the_fusions_are_the_registrys():
    (choice,) = FAMILIES["dtc"].params
    assert FUSIONS == choice.available


def test_hint_image_pastes_the_reference_into_the_largest_rectangle_on_black():
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 12:50] = 255
    mask[40:60, 20:22] = 255  # a thin tail: the rectangle is the block above
    reference = Image.new("RGB", (17, 23), (255, 0, 0))
    (hint,) = hint_images([Image.fromarray(mask)], [reference])
    rect = largest_inscribed_rectangle(mask > 0)
    assert (rect.top, rect.left, rect.height, rect.width) == (10, 12, 30, 38)
    inside = hint[:, rect.top : rect.bottom, rect.left : rect.right]
    assert torch.equal(inside[0], torch.ones_like(inside[0])) and torch.equal(inside[1], -torch.ones_like(inside[1]))
    outside = hint.clone()
    outside[:, rect.top : rect.bottom, rect.left : rect.right] = -1
    assert torch.equal(outside, -torch.ones_like(outside))


def test_adapter_maps_the_hint_to_the_latent_shape():
    hint = tiny_dtc_pipeline(0, "film").hint
    assert hint.adapter(torch.zeros(2, 3, 64, 64)).shape == (2, 4, 8, 8)
    convolutions = [layer for layer in hint.adapter.layers if isinstance(layer, torch.nn.Conv2d)]
    assert len(convolutions) == 4


def test_fresh_dtc_pipeline_equals_the_pbe_pipeline_on_the_same_parts(tiny_checkpoints, make_request):
    """End to end: with zero fusion, DTC's sampling (scene preparation, noise, DDIM, guidance,
    decoding) is PBE's, so the image equals diffusers' PBE pipeline with the same UNet,
    VAE, DINOv2 encoder and DDIM scheduler."""
    dtc = tiny_dtc_pipeline(0, "film", trained=False)
    pbe = load_pbe_pipeline(tiny_checkpoints["pbe_dinov2"], encoder="dinov2")
    pbe.scheduler = DDIMScheduler.from_config(dtc.scheduler.config)
    request = make_request(3)
    scene, mask = prepare_canvas(request, 64)
    kwargs = dict(example_image=[request.reference], image=[scene], mask_image=[mask], num_inference_steps=4, guidance_scale=5.0)
    ours = dtc(**kwargs, generator=[torch.Generator().manual_seed(7)], output_type="np")
    theirs = pbe(**kwargs, generator=[torch.Generator().manual_seed(7)], output_type="np").images
    assert np.array_equal(ours, theirs)


@pytest.fixture(scope="module")
def dtc_generator(tiny_checkpoints):
    return DtcGenerator(tiny_checkpoints["dtc_film"], params={"fusion": "film"})


def test_save_load_and_generate_again_gives_identical_images(tmp_path, make_request):
    built = tiny_dtc_pipeline(0, "cross_attention")
    path = built.save_pretrained(tmp_path / "dtc")
    loaded = DiffuseToChoosePipeline.from_pretrained(path, fusion="cross_attention")
    for name, model in built.models.items():
        a, b = model.state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    request = make_request(1)
    scene, mask = prepare_canvas(request, 64)
    kwargs = dict(example_image=[request.reference], image=[scene], mask_image=[mask], num_inference_steps=3)
    first = built(**kwargs, generator=[torch.Generator().manual_seed(0)], output_type="np")
    again = loaded(**kwargs, generator=[torch.Generator().manual_seed(0)], output_type="np")
    assert np.array_equal(first, again)
    # And through the generator, twice from the same checkpoint folder.
    one = DtcGenerator(path, params={"fusion": "cross_attention"}).generate([request], SETTINGS)[0]
    two = DtcGenerator(path, params={"fusion": "cross_attention"}).generate([request], SETTINGS)[0]
    assert np.array_equal(np.asarray(one), np.asarray(two))


def test_same_seed_same_image_whatever_the_batch(dtc_generator, make_request):
    requests = [make_request(seed) for seed in range(3)]
    alone = [np.asarray(dtc_generator.generate([request], SETTINGS)[0]) for request in requests]
    together = [np.asarray(image) for image in dtc_generator.generate(list(reversed(requests)), SETTINGS)]
    for single, batched in zip(alone, reversed(together)):
        assert np.array_equal(single, batched)
    assert not np.array_equal(alone[0], alone[1])
    assert dtc_generator.generate([requests[0]], SETTINGS)[0].size == (64, 64)


def test_each_fusion_checkpoint_draws_its_own_images(tiny_checkpoints, dtc_generator, make_request):
    request = make_request(0)
    images = {"film": np.asarray(dtc_generator.generate([request], SETTINGS)[0])}
    for fusion in ("cross_attention", "addition"):
        generator = DtcGenerator(tiny_checkpoints[f"dtc_{fusion}"], params={"fusion": fusion})
        images[fusion] = np.asarray(generator.generate([request], SETTINGS)[0])
    assert not np.array_equal(images["film"], images["addition"])
    assert not np.array_equal(images["film"], images["cross_attention"])
    assert dtc_generator.describe()["family"] == "dtc"
    assert dtc_generator.describe()["scheduler"] == "DDIMScheduler"


def test_hint_computed_once_when_it_does_not_see_the_noisy_latent(make_request):
    pipeline = tiny_dtc_pipeline(0, "film", hint_sees_noisy_latent=False)
    assert pipeline.hint.conv_in.in_channels == 4
    calls = []
    original = pipeline.hint.features
    pipeline.hint.features = lambda *args: calls.append(args[1]) or original(*args)
    request = make_request(0)
    scene, mask = prepare_canvas(request, 64)
    pipeline(example_image=[request.reference], image=[scene], mask_image=[mask], num_inference_steps=4,
             generator=[torch.Generator().manual_seed(0)])
    assert calls == [0]


@pytest.mark.parametrize("sees_noisy_latent", [True, False])
def test_one_training_step_reaches_adapter_hint_encoder_and_fusion(sees_noisy_latent):
    """Gradients flow to every part DTC adds (the main UNet stays frozen, as in the paper)."""
    pipeline = tiny_dtc_pipeline(0, "film", trained=False, hint_sees_noisy_latent=sees_noisy_latent)
    unet, hint = pipeline.unet, pipeline.hint
    unet.requires_grad_(False)
    hint.train()
    before = {name: p.detach().clone() for name, p in hint.named_parameters()}
    optimizer = torch.optim.AdamW(hint.parameters(), lr=1e-3)

    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 4, 8, 8, generator=generator)
    scene = torch.randn(2, 4, 8, 8, generator=generator)
    keep = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    states = torch.randn(2, 65, 32, generator=generator)
    target = torch.randn(2, 4, 8, 8, generator=generator)
    hint_latent = hint.hint_latent(torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1, scene)
    hint_input = torch.cat([noisy, hint_latent, keep], 1) if sees_noisy_latent else hint_latent
    # Two steps: with zero-initialised fusion the first only moves the fusion layers
    # (the zeros block the gradient to everything behind them), the second reaches the rest.
    for _ in range(2):
        optimizer.zero_grad()
        features = hint.features(hint_input, 500, states)
        prediction = fused_unet_forward(unet, torch.cat([noisy, scene, keep], 1), 500, states, features, hint.fusion_layers)
        torch.nn.functional.mse_loss(prediction, target).backward(retain_graph=True)
        optimizer.step()
        hint_latent = hint.hint_latent(torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1, scene)
        hint_input = torch.cat([noisy, hint_latent, keep], 1) if sees_noisy_latent else hint_latent

    changed = {name for name, p in hint.named_parameters() if not torch.equal(p, before[name])}
    for part in ("adapter.", "conv_in.", "time_embedding.", "down_blocks.", "mid_block.", "fusion_layers."):
        assert any(name.startswith(part) for name in changed), part
    assert all(p.grad is None for p in unet.parameters())


def test_hint_encoder_starts_as_a_copy_of_the_unets_encoder():
    pipeline = tiny_dtc_pipeline(0, "film", trained=False)
    unet, hint = pipeline.unet, pipeline.hint
    for name in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        a, b = getattr(unet, name).state_dict(), getattr(hint, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    without_noise = tiny_dtc_pipeline(0, "film", hint_sees_noisy_latent=False).hint
    assert torch.equal(without_noise.conv_in.weight, unet.conv_in.weight[:, 4:8])  # the masked-scene latent's slice


# --- configuration errors, before any weights are read ----------------------------------


def test_fusion_must_match_the_checkpoint(tiny_checkpoints):
    with pytest.raises(GeneratorError, match=r"its fusion layers are 'film' \(hint/config.json\), the method asks for fusion = 'addition'"):
        check_dtc_checkpoint(tiny_checkpoints["dtc_film"], {"fusion": "addition"})
    with pytest.raises(GeneratorError, match="fusion = 'addition'"):
        DtcGenerator(tiny_checkpoints["dtc_film"], params={"fusion": "addition"})
    with pytest.raises(GeneratorError, match="fusion = 'sum' is not allowed; allowed values: film, cross_attention, addition"):
        DtcGenerator(tiny_checkpoints["dtc_film"], params={"fusion": "sum"})


def copy_checkpoint(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def test_hint_built_for_another_unet_is_named_with_its_shape(tiny_checkpoints, tmp_path):
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    config = json.loads((root / "hint/config.json").read_text())
    config["unet_config"]["block_out_channels"] = [320, 640]
    (root / "hint/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match=r"hint/ was built for a UNet with block_out_channels = \[320, 640\], unet/ has block_out_channels = \[32, 64\]"):
        check_dtc_checkpoint(root)


def test_fusion_weights_of_another_kind_are_named(tiny_checkpoints, tmp_path):
    """Config says film, the weights are addition's: refused, never loaded half-random."""
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    tiny_dtc_pipeline(0, "addition").hint.save_pretrained(tmp_path / "other-hint")
    shutil.copy(tmp_path / "other-hint/diffusion_pytorch_model.safetensors", root / "hint/diffusion_pytorch_model.safetensors")
    with pytest.raises(GeneratorError) as error:
        DiffuseToChoosePipeline.from_pretrained(root)
    message = str(error.value)
    assert f"{root / 'hint'}: the hint (adapter, hint encoder, fusion) weights do not match its config.json" in message
    assert "parameters missing from the weights: fusion_layers.0.to_gamma_beta.bias" in message
    assert "weights the config has no place for: fusion_layers.0.zero_conv.bias" in message


def test_weights_of_another_shape_are_named_with_both_shapes(tiny_checkpoints, tmp_path):
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    config = json.loads((root / "hint/config.json").read_text())
    config["adapter_channels"] = [16, 8, 8]  # the weights are (8, 8, 8)
    (root / "hint/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError) as error:
        DiffuseToChoosePipeline.from_pretrained(root)
    message = str(error.value)
    assert "hint" in message and "adapter.layers.0.weight" in message
    assert "8, 3, 3, 3" in message and "16, 3, 3, 3" in message


def test_unet_of_another_width_is_named(tiny_checkpoints, tmp_path):
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    config = json.loads((root / "image_projection/config.json").read_text())
    config["out_features"] = 768
    (root / "image_projection/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match=r"image_projection/ maps 48 -> 768 features; the encoder gives 48 and the UNet's cross-attention takes 32"):
        check_dtc_checkpoint(root)


def test_missing_dinov2_folder_is_named(tiny_checkpoints, tmp_path):
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    shutil.rmtree(root / "image_encoder")
    with pytest.raises(GeneratorError, match=r"is incomplete, missing: image_encoder/config.json, image_encoder/model.safetensors"):
        DtcGenerator(root, params={"fusion": "film"})


def test_a_clip_encoder_where_dinov2_belongs_is_refused(tiny_checkpoints, tmp_path):
    root = copy_checkpoint(tiny_checkpoints["dtc_film"], tmp_path)
    shutil.rmtree(root / "image_encoder")
    shutil.copytree(tiny_checkpoints["pbe_clip_all"] / "image_encoder", root / "image_encoder")
    with pytest.raises(GeneratorError, match=r"image_encoder/ holds a CLIPVisionModel, encoder = 'dinov2' needs a transformers Dinov2Model folder"):
        check_dtc_checkpoint(root)


def test_a_pbe_checkpoint_is_not_a_dtc_checkpoint(tiny_checkpoints):
    with pytest.raises(GeneratorError, match="incomplete, missing: hint/config.json"):
        check_dtc_checkpoint(tiny_checkpoints["pbe_dinov2"])


# --- building an untrained DTC from a base checkpoint ---------------------------------


def write_dinov2_folder(tiny_checkpoints, tmp_path) -> Path:
    """A transformers Dinov2Model folder with its preprocessor, as facebook/dinov2-* ships."""
    folder = tmp_path / "dinov2-tiny"
    shutil.copytree(tiny_checkpoints["pbe_dinov2"] / "image_encoder", folder)
    shutil.copy(tiny_checkpoints["pbe_dinov2"] / "feature_extractor/preprocessor_config.json", folder)
    return folder


def write_sd_inpainting(source: Path, tmp_path: Path) -> Path:
    """A tiny PBE's unet/vae/scheduler written as a Stable Diffusion inpainting checkpoint
    (any 9-channel UNet stands for one: the test is about input order and mask convention)."""
    root = tmp_path / "sd-inpainting"
    pbe = load_pbe_pipeline(source)
    for name in ("unet", "vae", "scheduler"):
        getattr(pbe, name).save_pretrained(root / name)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))
    return root


def test_build_from_pbe_keeps_its_unet_and_predicts_as_it(tiny_checkpoints, tmp_path, make_request):
    dinov2 = write_dinov2_folder(tiny_checkpoints, tmp_path)
    out = build_dtc(tiny_checkpoints["pbe"], dinov2, tmp_path / "dtc", fusion="addition")
    check_dtc_checkpoint(out, {"fusion": "addition"})
    dtc = DiffuseToChoosePipeline.from_pretrained(out, fusion="addition")
    pbe = load_pbe_pipeline(tiny_checkpoints["pbe"])
    assert all(torch.equal(a, b) for a, b in zip(dtc.unet.state_dict().values(), pbe.unet.state_dict().values()))
    assert type(dtc.scheduler).__name__ == "DDIMScheduler" and dtc.scheduler.config.clip_sample is False
    sample, timestep, states = unet_inputs(dtc.unet)
    with torch.no_grad():
        assert torch.equal(hint_prediction(dtc, sample, timestep, states), pbe.unet(sample, timestep, encoder_hidden_states=states).sample)


def test_build_from_sd_inpainting_keeps_its_unets_function(tiny_checkpoints, tmp_path):
    """SD inpainting reads [noisy, fill mask, masked scene]; DTC feeds [noisy, masked scene,
    mask in the UNet's convention]: the built UNet predicts what the SD UNet predicts."""
    dinov2 = write_dinov2_folder(tiny_checkpoints, tmp_path)
    sd = write_sd_inpainting(tiny_checkpoints["pbe"], tmp_path)
    out = build_dtc(sd, dinov2, tmp_path / "dtc", fusion="film")
    dtc = DiffuseToChoosePipeline.from_pretrained(out)
    assert dtc.hint.config.mask_channel == "fill"
    sd_unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    generator = torch.Generator().manual_seed(0)
    noisy, scene = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    keep = torch.ones(1, 1, 8, 8)
    keep[..., 2:6, 1:5] = 0  # the region to fill
    states = torch.randn(1, 65, 32, generator=generator)
    with torch.no_grad():
        sd_prediction = sd_unet(torch.cat([noisy, 1 - keep, scene], 1), 10, encoder_hidden_states=states).sample
        dtc_input = torch.cat([noisy, scene, dtc.hint.unet_mask(keep)], 1)
        dtc_prediction = dtc.unet(dtc_input, 10, encoder_hidden_states=states).sample
        pbe_convention = dtc.unet(torch.cat([noisy, scene, keep], 1), 10, encoder_hidden_states=states).sample
    # Equal up to the convolution's summation order over its input channels.
    torch.testing.assert_close(dtc_prediction, sd_prediction, rtol=0, atol=1e-5)
    assert (pbe_convention - sd_prediction).abs().max() > 1e-2
    # A PBE base keeps PBE's convention.
    from_pbe = build_dtc(tiny_checkpoints["pbe"], dinov2, tmp_path / "dtc-pbe")
    assert json.loads((from_pbe / "hint/config.json").read_text())["mask_channel"] == "keep"


def test_build_refuses_a_unet_that_is_not_for_inpainting(tiny_checkpoints, tmp_path):
    dinov2 = write_dinov2_folder(tiny_checkpoints, tmp_path)
    sd = write_sd_inpainting(tiny_checkpoints["pbe"], tmp_path)
    config = json.loads((sd / "unet/config.json").read_text())
    config["center_input_sample"] = True  # a UNet feature DTC's forward does not implement
    (sd / "unet/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match="center_input_sample = True; DTC supports Stable Diffusion UNets"):
        build_dtc(sd, dinov2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_refuses_what_it_cannot_use(tiny_checkpoints, tmp_path):
    dinov2 = write_dinov2_folder(tiny_checkpoints, tmp_path)
    with pytest.raises(GeneratorError, match="a DiffuseToChoosePipeline checkpoint; expected StableDiffusionInpaintPipeline or PaintByExamplePipeline"):
        build_dtc(tiny_checkpoints["dtc_film"], dinov2, tmp_path / "out")
    with pytest.raises(GeneratorError, match="DINOv2 folder .* has no config.json"):
        build_dtc(tiny_checkpoints["pbe"], tmp_path / "absent", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_init_command(tiny_checkpoints, tmp_path):
    dinov2 = write_dinov2_folder(tiny_checkpoints, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "generators.dtc", "init", str(tmp_path / "dtc"), "--base", str(tiny_checkpoints["pbe_dinov2"]),
         "--dinov2", str(dinov2), "--fusion", "cross_attention", "--cross-attention-min-level", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "dtc")
    config = json.loads((tmp_path / "dtc/hint/config.json").read_text())
    assert (config["fusion"], config["cross_attention_min_level"], config["hint_sees_noisy_latent"]) == ("cross_attention", 1, True)
    failed = subprocess.run(
        [sys.executable, "-m", "generators.dtc", "init", str(tmp_path / "x"), "--base", str(tmp_path), "--dinov2", str(dinov2)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert failed.returncode == 2 and "error: cannot read" in failed.stderr and "model_index.json" in failed.stderr
