"""Strict loading: what diffusers itself accepts loads; what it would load half-random does not."""
import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from generators.checkpoints import check_pbe_checkpoint
from generators.pbe import load_pbe_pipeline
from generators.strict_loading import load_strictly
from generators.tiny import tiny_pbe_components
from generators.types import GeneratorError

OLD_ATTENTION_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def test_an_old_vae_with_deprecated_attention_names_loads(tmp_path):
    """Stable Diffusion 1.x VAEs saved before diffusers renamed its attention layers
    (query/key/value/proj_attn) load in diffusers; they load here too, to the same weights."""
    vae = tiny_pbe_components(0)["vae"]
    vae.save_pretrained(tmp_path / "vae")
    weights = load_file(tmp_path / "vae/diffusion_pytorch_model.safetensors")
    renamed = {}
    for key, value in weights.items():
        for new, old in OLD_ATTENTION_NAMES.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
        renamed[key] = value
    assert any(".query." in key for key in renamed)
    save_file(renamed, tmp_path / "vae/diffusion_pytorch_model.safetensors")
    loaded = load_strictly(AutoencoderKL, tmp_path / "vae", "VAE")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vae.state_dict().values()))


def test_a_sharded_unet_is_a_complete_checkpoint_and_loads(tiny_pbe_checkpoint, tmp_path):
    root = shutil.copytree(tiny_pbe_checkpoint, tmp_path / "pbe")
    unet = UNet2DConditionModel.from_pretrained(root / "unet")
    shutil.rmtree(root / "unet")
    unet.save_pretrained(root / "unet", max_shard_size="200KB")
    assert (root / "unet/diffusion_pytorch_model.safetensors.index.json").is_file()
    assert len(list((root / "unet").glob("*.safetensors"))) > 1
    check_pbe_checkpoint(root)
    loaded = load_pbe_pipeline(root)
    assert all(torch.equal(a, b) for a, b in zip(loaded.unet.state_dict().values(), unet.state_dict().values()))


def test_a_sharded_unet_with_a_missing_parameter_is_refused(tiny_pbe_checkpoint, tmp_path):
    root = shutil.copytree(tiny_pbe_checkpoint, tmp_path / "pbe")
    config = json.loads((root / "unet/config.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(root / "unet")
    shutil.rmtree(root / "unet")
    unet.save_pretrained(root / "unet", max_shard_size="200KB")
    config["layers_per_block"] = 2  # the weights have one resnet per block
    (root / "unet/config.json").write_text(json.dumps(config))
    with pytest.raises(GeneratorError) as error:
        load_pbe_pipeline(root)
    message = str(error.value)  # read from the shards' headers, every problem at once
    assert f"{root / 'unet'}: the UNet weights do not match its config.json; shapes differ: " in message
    assert "up_blocks.0.resnets.1.conv1.weight: weights (64, 96, 3, 3), config (64, 128, 3, 3)" in message
    assert "parameters missing from the weights: down_blocks.0.attentions.1.norm.bias" in message
