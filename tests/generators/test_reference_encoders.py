"""The Paint-by-Example reference encoders of DTC's Table 2: clip_cls, clip_all, dinov2."""
import json
import shutil

import numpy as np
import pytest
import torch
from transformers import CLIPVisionConfig, Dinov2Config

from generators.checkpoints import check_pbe_checkpoint
from generators.pbe import PbeGenerator, TokenPaintByExamplePipeline, load_pbe_pipeline
from generators.reference_encoders import build_token_encoder, encode_reference
from generators.types import GenerationSettings, GeneratorError

SETTINGS = GenerationSettings(num_inference_steps=2, guidance_scale=5.0, resolution=64)

# CLIP ViT-L/14 at 224 px (PBE's encoder) and DINOv2 ViT-g/14 (DTC's), as their config.json say.
CLIP_VIT_L14 = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                num_hidden_layers=24, image_size=224, patch_size=14, projection_dim=768)
DINOV2_VIT_G14 = Dinov2Config(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                              image_size=518, patch_size=14, ffn_layer="swiglufused")


@pytest.mark.parametrize(("kind", "config", "width"), [("clip_all", CLIP_VIT_L14, 1024), ("dinov2", DINOV2_VIT_G14, 1536)])
def test_full_size_encoders_give_257_tokens_projected_to_768(kind, config, width):
    with torch.device("meta"):
        encoder = build_token_encoder(kind, config, out_features=768)
        pixels = torch.empty(2, 3, 224, 224)
        hidden = encoder.backbone(pixel_values=pixels).last_hidden_state
        tokens, uncond = encoder(pixels, return_uncond_vector=True)
        guided = encode_reference(encoder, pixels, classifier_free_guidance=True)
    assert tuple(hidden.shape) == (2, 257, width)  # CLS + (224 / 14)^2 = 256 patches
    assert tuple(tokens.shape) == (2, 257, 768)
    assert tuple(uncond.shape) == (1, 1, 768)
    assert tuple(guided.shape) == (4, 257, 768)
    assert encoder.projection.proj.in_features == width and encoder.proj_size == 768


@pytest.mark.parametrize("name, encoder", [("pbe_clip_all", "clip_all"), ("pbe_dinov2", "dinov2")])
def test_token_variants_generate_and_use_every_token(tiny_checkpoints, make_request, name, encoder):
    generator = PbeGenerator(tiny_checkpoints[name], params={"encoder": encoder})
    assert isinstance(generator.pipeline, TokenPaintByExamplePipeline)
    pipeline = generator.pipeline
    pixels = pipeline.feature_extractor(images=[make_request(0).reference], return_tensors="pt").pixel_values
    with torch.no_grad():
        tokens = encode_reference(pipeline.image_encoder, pixels, classifier_free_guidance=True)
    assert tuple(tokens.shape) == (2, 65, 32)  # tiny: CLS + (32 / 4)^2 patches, UNet width 32
    assert torch.equal(tokens[0], pipeline.image_encoder.projection.uncond_vector[0].expand(65, 32))
    request = make_request(0)
    first = np.asarray(generator.generate([request], SETTINGS)[0])
    again = np.asarray(generator.generate([request], SETTINGS)[0])
    assert np.array_equal(first, again) and first.shape == (64, 64, 3)
    assert generator.describe()["params"] == {"encoder": encoder}


def test_the_encoders_see_the_reference(tiny_checkpoints, make_request):
    """Another reference, another image: the tokens reach the UNet's cross-attention."""
    generator = PbeGenerator(tiny_checkpoints["pbe_dinov2"], params={"encoder": "dinov2"})
    request = make_request(0)
    other = make_request(0).__class__(**{**request.__dict__, "reference": make_request(5).reference})
    assert not np.array_equal(np.asarray(generator.generate([request], SETTINGS)[0]),
                              np.asarray(generator.generate([other], SETTINGS)[0]))


def test_perceptual_is_another_checkpoint_of_the_dinov2_variant(tiny_checkpoints, make_request):
    plain = PbeGenerator(tiny_checkpoints["pbe_dinov2"], params={"encoder": "dinov2"})
    perceptual = PbeGenerator(tiny_checkpoints["pbe_dinov2_perceptual"], params={"encoder": "dinov2"})
    assert type(plain.pipeline) is type(perceptual.pipeline)
    request = make_request(1)
    assert not np.array_equal(np.asarray(plain.generate([request], SETTINGS)[0]), np.asarray(perceptual.generate([request], SETTINGS)[0]))


def test_encoder_param_must_fit_the_checkpoint(tiny_checkpoints):
    with pytest.raises(GeneratorError, match=r"holds a token encoder \(image_projection/\); it is a clip_all or dinov2 checkpoint"):
        check_pbe_checkpoint(tiny_checkpoints["pbe_dinov2"], {"encoder": "clip_cls"})
    with pytest.raises(GeneratorError, match=r"image_encoder/ holds a Dinov2Model, encoder = 'clip_all' needs a transformers CLIPVisionModel folder"):
        check_pbe_checkpoint(tiny_checkpoints["pbe_dinov2"], {"encoder": "clip_all"})
    with pytest.raises(GeneratorError, match=r"image_encoder/ holds a CLIPVisionModel, encoder = 'dinov2' needs a transformers Dinov2Model folder"):
        check_pbe_checkpoint(tiny_checkpoints["pbe_clip_all"], {"encoder": "dinov2"})
    with pytest.raises(GeneratorError, match=r"incomplete, missing: image_projection/config.json"):
        check_pbe_checkpoint(tiny_checkpoints["pbe"], {"encoder": "dinov2"})


def test_missing_encoder_folder_and_projection_width_are_named(tiny_checkpoints, tmp_path):
    root = shutil.copytree(tiny_checkpoints["pbe_dinov2"], tmp_path / "pbe_dinov2")
    config = json.loads((root / "image_projection/config.json").read_text())
    config["in_features"] = 1536
    (root / "image_projection/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match=r"image_projection/ maps 1536 -> 32 features; the encoder gives 48 and the UNet's cross-attention takes 32"):
        load_pbe_pipeline(root, encoder="dinov2")
    shutil.rmtree(root / "image_encoder")
    with pytest.raises(GeneratorError, match=r"missing: image_encoder/config.json, image_encoder/model.safetensors or image_encoder/pytorch_model.bin"):
        PbeGenerator(root, params={"encoder": "dinov2"})


def test_encoder_weights_that_do_not_fit_their_config_are_refused(tiny_checkpoints, tmp_path):
    """transformers would load them with a warning and random parameters; here they are refused."""
    root = shutil.copytree(tiny_checkpoints["pbe_dinov2"], tmp_path / "pbe_dinov2")
    config = json.loads((root / "image_encoder/config.json").read_text())
    config["num_hidden_layers"] = 3  # the weights have 2 layers
    (root / "image_encoder/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError, match=r"the dinov2 encoder weights do not match its config.json; parameters missing from the weights: encoder.layer.2"):
        load_pbe_pipeline(root, encoder="dinov2")


def test_reshaped_encoder_weights_are_named_with_both_shapes(tiny_checkpoints, tmp_path):
    root = shutil.copytree(tiny_checkpoints["pbe_dinov2"], tmp_path / "pbe_dinov2")
    config = json.loads((root / "image_encoder/config.json").read_text())
    config["mlp_ratio"] = 3  # the weights' MLP is 2 x 48 = 96 wide
    (root / "image_encoder/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError) as error:
        load_pbe_pipeline(root, encoder="dinov2")
    message = str(error.value)
    assert "the dinov2 encoder weights do not match its config.json; shapes differ:" in message
    assert "mlp.fc1.weight: weights (96, 48), config (144, 48)" in message
