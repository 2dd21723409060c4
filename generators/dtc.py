"""Diffuse to Choose (Seyfioglu et al. 2024, arXiv 2401.13795), as METHODS.md describes it.

No public code or weights exist, so this file is the reference. The model:

    hint image   = black canvas, the reference pasted into the mask's largest inscribed
                   rectangle (shared with copy_paste), normalised to [-1, 1] as VAE input
    hint latent  = HintAdapter(hint image) + VAE latent of the masked scene
    hint features= the hint encoder (a trainable copy of the main UNet's conv_in, time
                   embedding, down blocks and mid block, built like ControlNet's from_unet)
                   run on the hint latent: 13 maps at SD 1.5 scale (12 skips + mid)
    noise        = the main (PBE-style, 9-channel) UNet, each skip connection and the mid
                   block's output fused with the matching hint feature, DINOv2 reference
                   tokens in cross-attention

Fusion forms (the paper gives no equations; these are the platform's documented choice),
each zero-initialised so that a freshly built DTC predicts exactly what its main UNet does:
    addition:        skip + Z(hint),                 Z a 1x1 conv
    film:            skip * (1 + gamma) + beta,      [gamma, beta] = 1x1 conv of hint
    cross_attention: skip + W_o attention(q = skip tokens, k, v = hint tokens)
                     (scaled-dot-product; `cross_attention_min_level` keeps it to the
                     lower resolutions, addition above them)

Choices METHODS.md leaves open, as config switches of the hint model:
    hint_sees_noisy_latent (default True, as ControlNet): the hint encoder's input is the
        main UNet's input with the hint latent in the masked-scene slot, at the step's
        timestep. False: the hint latent alone at timestep 0, so the 13 features are
        computed once per image instead of once per step.
    guidance: the unconditional branch swaps the reference tokens for the learned
        unconditional vector and keeps the hint (as ControlNet's guidance does).
    mask_channel ("keep", PBE's; "fill" for a DTC built from an SD-inpainting UNet): what
        the UNet's mask input holds, so either base keeps computing what it was trained to.

Inference: DDIM, 40 steps, guidance 5. A checkpoint is a folder (DiffuseToChoosePipeline
.save_pretrained / .from_pretrained); `python -m generators.dtc init` builds an untrained
one from a Stable Diffusion inpainting or Paint-by-Example checkpoint and a DINOv2 folder.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ConfigMixin, DDIMScheduler, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.deprecated.paint_by_example.pipeline_paint_by_example import (
    prepare_mask_and_masked_image,
)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import nn
from transformers import AutoImageProcessor, Dinov2Model

from generators.checkpoint_io import save_components
from generators.checkpoints import DTC_PIPELINE_CLASS, PBE_PIPELINE_CLASS, check_dtc_checkpoint, read_json
from generators.devices import resolve_dtype
from generators.images import paste_into_largest_rectangle
from generators.pbe import UNET_IN_CHANNELS, check_unet_fits, diffusion_loaders, load_components
from generators.pipeline_generator import CanvasPair, PipelineGenerator
from generators.reference_encoders import (
    ReferenceProjection,
    TokenReferenceEncoder,
    encode_reference,
    load_token_encoder,
)
from generators.strict_loading import load_strictly
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

DEFAULT_STEPS = 40
DEFAULT_GUIDANCE = 5.0


def zero_init(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class HintAdapter(nn.Module):
    """Four convolutions from the pixel-level hint image to the latent's shape: three of
    stride 2 (the VAE's factor 8), then one to the latent's channels."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128), latent_channels: int = 4):
        super().__init__()
        c1, c2, c3 = channels
        self.layers = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c3, latent_channels, 3, padding=1),
        )

    def forward(self, hint: torch.Tensor) -> torch.Tensor:
        return self.layers(hint)


class AdditionFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.zero_conv = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, skip: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        return skip + self.zero_conv(hint)


class FilmFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.to_gamma_beta = zero_init(nn.Conv2d(channels, 2 * channels, 1))

    def forward(self, skip: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gamma_beta(hint).chunk(2, dim=1)
        return skip * (1 + gamma) + beta


class CrossAttentionFusion(nn.Module):
    """Skip tokens attend to hint tokens (both layer-normed), heads of up to 64 channels."""

    def __init__(self, channels: int):
        super().__init__()
        head_dim = min(64, channels)
        if channels % head_dim:
            raise GeneratorError(f"cross-attention fusion needs channels divisible by {head_dim}, got {channels}")
        self.heads = channels // head_dim
        self.norm_skip = nn.LayerNorm(channels)
        self.norm_hint = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = zero_init(nn.Linear(channels, channels))

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, channels = tokens.shape
        return tokens.view(batch, length, self.heads, channels // self.heads).transpose(1, 2)

    def forward(self, skip: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = skip.shape
        skip_tokens = self.norm_skip(skip.flatten(2).transpose(1, 2))
        hint_tokens = self.norm_hint(hint.flatten(2).transpose(1, 2))
        attended = F.scaled_dot_product_attention(
            self._heads(self.to_q(skip_tokens)), self._heads(self.to_k(hint_tokens)), self._heads(self.to_v(hint_tokens))
        )
        attended = attended.transpose(1, 2).reshape(batch, height * width, channels)
        return skip + self.to_out(attended).transpose(1, 2).reshape(batch, channels, height, width)


FUSION_LAYERS = {"film": FilmFusion, "cross_attention": CrossAttentionFusion, "addition": AdditionFusion}
FUSIONS = tuple(FUSION_LAYERS)  # as generators.families lists them (a test holds them equal)


def fusion_points(unet_config) -> list[tuple[int, int]]:
    """(channels, level) of each point the hint is fused at, in the UNet's skip order:
    conv_in, each down block's resnets and downsampler, then the mid block. Level 0 is the
    latent's full resolution, each downsampler one more. 13 points at SD 1.5 scale."""
    channels = list(unet_config["block_out_channels"])
    per_block = unet_config["layers_per_block"]
    per_block = [per_block] * len(channels) if isinstance(per_block, int) else list(per_block)
    points = [(channels[0], 0)]
    for level, (width, layers) in enumerate(zip(channels, per_block)):
        points += [(width, level)] * layers
        if level < len(channels) - 1:
            points.append((width, level + 1))
    points.append((channels[-1], len(channels) - 1))
    return points


# What the UNet's mask input holds: "keep" = 1 where the scene is kept (Paint by Example's,
# the default), "fill" = 1 where it is filled (Stable Diffusion inpainting's, for a DTC
# built from an SD-inpainting UNet). Exact either way; no weight is changed to convert.
MASK_CHANNELS = ("keep", "fill")


class DtcHintModel(ModelMixin, ConfigMixin):
    """Everything DTC adds to a PBE-style UNet: the adapter, the hint encoder and the fusion
    layers. `unet_config` is the main UNet's config; the hint encoder is built from it."""

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        fusion: str = "film",
        hint_sees_noisy_latent: bool = True,
        adapter_channels: Sequence[int] = (32, 64, 128),
        cross_attention_min_level: int = 0,
        mask_channel: str = "keep",
    ):
        super().__init__()
        if fusion not in FUSION_LAYERS:
            raise GeneratorError(f"fusion = {fusion!r} is not allowed; allowed values: {', '.join(FUSIONS)}")
        if mask_channel not in MASK_CHANNELS:
            raise GeneratorError(f"mask_channel = {mask_channel!r} is not allowed; allowed values: {', '.join(MASK_CHANNELS)}")
        latent_channels = unet_config["out_channels"]
        in_channels = unet_config["in_channels"] if hint_sees_noisy_latent else latent_channels
        # The encoder half of a UNet of the same config (its up blocks are dropped).
        encoder = UNet2DConditionModel.from_config({**unet_config, "in_channels": in_channels})
        self.conv_in = encoder.conv_in
        self.time_proj = encoder.time_proj
        self.time_embedding = encoder.time_embedding
        self.down_blocks = encoder.down_blocks
        self.mid_block = encoder.mid_block
        self.adapter = HintAdapter(adapter_channels, latent_channels)
        self.fusion_layers = nn.ModuleList(
            FUSION_LAYERS["addition" if fusion == "cross_attention" and level < cross_attention_min_level else fusion](width)
            for width, level in fusion_points(unet_config)
        )

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, *, fusion: str = "film", hint_sees_noisy_latent: bool = True,
                  adapter_channels: Sequence[int] = (32, 64, 128), cross_attention_min_level: int = 0,
                  mask_channel: str = "keep") -> "DtcHintModel":
        """A hint model whose encoder starts as a copy of `unet`'s (ControlNet's from_unet)."""
        model = cls(
            unet_config=dict(unet.config), fusion=fusion, hint_sees_noisy_latent=hint_sees_noisy_latent,
            adapter_channels=tuple(adapter_channels), cross_attention_min_level=cross_attention_min_level,
            mask_channel=mask_channel,
        )
        if (model.device, model.dtype) != (unet.device, unet.dtype):
            model.to(device=unet.device, dtype=unet.dtype)
        for name in ("time_embedding", "down_blocks", "mid_block"):
            getattr(model, name).load_state_dict(getattr(unet, name).state_dict())
        conv_in = unet.conv_in.state_dict()
        if not hint_sees_noisy_latent:
            # Its input is a scene latent: start from the weights that read the masked-scene
            # latent (input channels 4..7 of a PBE UNet).
            latent = unet.config.out_channels
            conv_in["weight"] = conv_in["weight"][:, latent : 2 * latent]
        model.conv_in.load_state_dict(conv_in)
        return model

    def hint_latent(self, hint_image: torch.Tensor, scene_latent: torch.Tensor) -> torch.Tensor:
        return self.adapter(hint_image) + scene_latent

    def unet_mask(self, keep: torch.Tensor) -> torch.Tensor:
        """The UNet's mask input from a keep mask (1 = keep), in the UNet's own convention."""
        return keep if self.config.mask_channel == "keep" else 1 - keep

    def features(self, sample: torch.Tensor, timestep, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The hint encoder's 13 (at SD scale) feature maps, in the UNet's skip order."""
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
        return encoder_path(self, sample, emb, tokens)


def encoder_path(model, sample: torch.Tensor, emb: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
    """conv_in, the down blocks and the mid block of `model` (the main UNet, or the hint
    encoder copied from it), as UNet2DConditionModel.forward runs them: the skips in its
    order, then the mid block's output."""
    hidden = model.conv_in(sample)
    found = [hidden]
    for block in model.down_blocks:
        if getattr(block, "has_cross_attention", False):
            hidden, skips = block(hidden_states=hidden, temb=emb, encoder_hidden_states=tokens)
        else:
            hidden, skips = block(hidden_states=hidden, temb=emb)
        found.extend(skips)
    found.append(model.mid_block(hidden, emb, encoder_hidden_states=tokens))
    return found


# The UNet features fused_unet_forward implements; others (class or added embeddings,
# GLIGEN, an input projection of the encoder states) are refused at load.
_SD_UNET = {"class_embed_type": None, "addition_embed_type": None, "time_embedding_act_fn": None,
            "encoder_hid_dim_type": None, "center_input_sample": False, "mid_block_type": "UNetMidBlock2DCrossAttn"}


def check_sd_style_unet(root: Path, unet: UNet2DConditionModel) -> None:
    for field, expected in _SD_UNET.items():
        if unet.config.get(field, expected) != expected:
            raise GeneratorError(f"{root / 'unet'}: {field} = {unet.config[field]!r}; DTC supports Stable Diffusion UNets ({field} = {expected!r})")
    if unet.config.in_channels != UNET_IN_CHANNELS:
        raise GeneratorError(f"{root / 'unet'}: in_channels is {unet.config.in_channels}; DTC's UNet is a 9-channel inpainting UNet")


def fused_unet_forward(unet: UNet2DConditionModel, sample: torch.Tensor, timestep, tokens: torch.Tensor,
                       hint_features: Sequence[torch.Tensor], fusion: Sequence[nn.Module]) -> torch.Tensor:
    """The main UNet's noise prediction with each skip connection and the mid block's
    output fused with its hint feature. The same operations, in the same order, as
    UNet2DConditionModel.forward for a Stable Diffusion UNet, so zero fusion is exact."""
    upsample_factor = 2**unet.num_upsamplers
    odd_size = any(size % upsample_factor for size in sample.shape[-2:])
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)

    *skips, hidden = encoder_path(unet, sample, emb, tokens)

    *skip_fusion, mid_fusion = fusion
    *skip_hints, mid_hint = hint_features
    skips = tuple(layer(skip, hint) for layer, skip, hint in zip(skip_fusion, skips, skip_hints, strict=True))
    hidden = mid_fusion(hidden, mid_hint)

    for index, block in enumerate(unet.up_blocks):
        found, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
        upsample_size = skips[-1].shape[2:] if odd_size and index < len(unet.up_blocks) - 1 else None
        if getattr(block, "has_cross_attention", False):
            hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=found,
                           encoder_hidden_states=tokens, upsample_size=upsample_size)
        else:
            hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=found, upsample_size=upsample_size)
    if unet.conv_norm_out is not None:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return unet.conv_out(hidden)


def hint_images(masks: Sequence[Image.Image], references: Sequence[Image.Image]) -> torch.Tensor:
    """The pixel-level hint, (B, 3, H, W) in [-1, 1]: each reference pasted into its mask's
    largest inscribed rectangle on a black canvas. Fill is where the mask is >= 128, where
    PBE's mask preparation puts it."""
    pixels = np.stack([
        np.asarray(paste_into_largest_rectangle(
            Image.new("RGB", mask.size), mask.convert("L").point(lambda v: 255 if v >= 128 else 0), reference
        ))
        for mask, reference in zip(masks, references)
    ])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0


DTC_MODEL_INDEX = {
    "_class_name": DTC_PIPELINE_CLASS,
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "image_encoder": ["transformers", "Dinov2Model"],
    "image_projection": ["generators.reference_encoders", "ReferenceProjection"],
    "hint": ["generators.dtc", "DtcHintModel"],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "feature_extractor": ["transformers", "BitImageProcessor"],
}


class DiffuseToChoosePipeline:
    """DTC inference. Inputs as PaintByExamplePipeline's (mask white = fill, every image
    the same size, a multiple of 8); the scene is prepared exactly as PBE prepares it."""

    def __init__(self, *, unet: UNet2DConditionModel, vae: AutoencoderKL, image_encoder: TokenReferenceEncoder,
                 hint: DtcHintModel, scheduler: DDIMScheduler, feature_extractor):
        self.unet, self.vae, self.image_encoder, self.hint = unet, vae, image_encoder, hint
        self.scheduler, self.feature_extractor = scheduler, feature_extractor
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        for model in self.models.values():
            # Inference: freshly built parts are in training mode, where attention may take
            # another kernel (dropout), so built and loaded pipelines would differ in the last bit.
            model.eval()

    @property
    def models(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "image_encoder": self.image_encoder, "hint": self.hint}

    def to(self, device) -> "DiffuseToChoosePipeline":
        for model in self.models.values():
            model.to(device)
        return self

    def save_pretrained(self, path: str | Path) -> Path:
        components = {**self.models, "scheduler": self.scheduler, "feature_extractor": self.feature_extractor}
        return save_components(components, DTC_MODEL_INDEX, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str | None = None, fusion: str | None = None) -> "DiffuseToChoosePipeline":
        """Load a DTC checkpoint folder; with `fusion`, refuse one whose fusion layers differ.
        GeneratorError naming the component and the shapes when the parts do not fit."""
        root = check_dtc_checkpoint(path, {"fusion": fusion} if fusion else None)
        dtype = resolve_dtype(device, dtype)
        loaders = {
            **diffusion_loaders(root, dtype),
            "image_encoder": lambda _: load_token_encoder("dinov2", root, dtype),
            "hint": lambda folder: load_strictly(DtcHintModel, folder, "hint (adapter, hint encoder, fusion)", dtype=dtype),
            "feature_extractor": lambda folder: AutoImageProcessor.from_pretrained(folder, local_files_only=True),
        }
        components = load_components(root, loaders)
        check_unet_fits(root, components["unet"], components["image_encoder"])
        check_sd_style_unet(root, components["unet"])
        return cls(**components).to(device)

    def _encode_scene(self, masked_image: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        # One sample per image with its own generator, as diffusers' inpainting pipelines.
        latents = [self.vae.encode(masked_image[i : i + 1]).latent_dist.sample(generators[i])
                   for i in range(masked_image.shape[0])]
        return self.vae.config.scaling_factor * torch.cat(latents)

    @torch.no_grad()
    def __call__(self, example_image: Sequence[Image.Image], image: Sequence[Image.Image],
                 mask_image: Sequence[Image.Image], *, num_inference_steps: int = DEFAULT_STEPS,
                 guidance_scale: float = DEFAULT_GUIDANCE, generator: Sequence[torch.Generator],
                 output_type: str = "pil", callback=None):
        """Images for the batch; `callback(step, timestep, latents)` after each step."""
        device, dtype = self.unet.device, self.unet.dtype
        guided = guidance_scale > 1.0
        double = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)

        keep, masked_image = prepare_mask_and_masked_image(list(image), list(mask_image))  # 1 = keep
        height, width = masked_image.shape[-2:]
        pixels = self.feature_extractor(images=list(example_image), return_tensors="pt").pixel_values
        tokens = encode_reference(self.image_encoder, pixels.to(device), guided)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (len(image), self.vae.config.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=list(generator), device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        mask = self.hint.unet_mask(F.interpolate(keep, size=shape[-2:]).to(device=device, dtype=dtype))
        scene = self._encode_scene(masked_image.to(device=device, dtype=dtype), generator)
        hint = self.hint.hint_latent(hint_images(mask_image, example_image).to(device=device, dtype=dtype), scene)
        mask, scene, hint = double(mask), double(scene), double(hint)
        fixed_features = None if self.hint.config.hint_sees_noisy_latent else self.hint.features(hint, 0, tokens)

        step_kwargs = _step_kwargs(self.scheduler, generator)
        for step, t in enumerate(self.scheduler.timesteps):
            noisy = self.scheduler.scale_model_input(double(latents), t)
            features = fixed_features if fixed_features is not None else self.hint.features(torch.cat([noisy, hint, mask], dim=1), t, tokens)
            noise = fused_unet_forward(self.unet, torch.cat([noisy, scene, mask], dim=1), t, tokens, features, self.hint.fusion_layers)
            if guided:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents, **step_kwargs).prev_sample
            if callback is not None:
                callback(step, t, latents)
        if output_type == "latent":
            return latents
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return self.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=[True] * len(image))


def _step_kwargs(scheduler, generator) -> dict:
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"eta": 0.0} if "eta" in accepted else {}
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


class DtcGenerator(PipelineGenerator):
    """Diffuse to Choose with the fusion params["fusion"] names (see PipelineGenerator)."""

    family = "dtc"

    def _load(self, dtype) -> DiffuseToChoosePipeline:
        return DiffuseToChoosePipeline.from_pretrained(self.checkpoint, device=self.device, dtype=dtype,
                                                       fusion=self.params["fusion"])

    def describe(self) -> dict:
        config = self.pipeline.hint.config
        return {**super().describe(), "hint_sees_noisy_latent": config.hint_sees_noisy_latent,
                "cross_attention_min_level": config.cross_attention_min_level}

    def _call_pipeline(self, requests: Sequence[InpaintRequest], canvases: Sequence[CanvasPair],
                       settings: GenerationSettings) -> list[Image.Image]:
        return self.pipeline(
            example_image=[request.reference.convert("RGB") for request in requests],
            **self._sampling_kwargs(requests, canvases, settings),
        )


# --- building an untrained DTC -------------------------------------------------------------

SD_INPAINT_CLASS = "StableDiffusionInpaintPipeline"


def _pbe_ordered_unet(unet: UNet2DConditionModel, base_class: str) -> UNet2DConditionModel:
    """Stable Diffusion inpainting reads [noisy, mask, masked scene]; PBE (and DTC) read
    [noisy, masked scene, mask]. Reorder conv_in's input channels (a permutation: the same
    function up to the order of a sum); its mask stays 1 = fill (mask_channel = "fill")."""
    if base_class == SD_INPAINT_CLASS:
        latent = unet.config.out_channels
        weight = unet.conv_in.weight.data
        unet.conv_in.weight.data = torch.cat([weight[:, :latent], weight[:, latent + 1 :], weight[:, latent : latent + 1]], dim=1)
    return unet


def build_dtc(base: str | Path, dinov2: str | Path, out: str | Path, *, fusion: str = "film",
              hint_sees_noisy_latent: bool = True, cross_attention_min_level: int = 0,
              adapter_channels: Sequence[int] = (32, 64, 128), seed: int = 0) -> Path:
    """Write an untrained DTC checkpoint to `out`: the UNet and VAE of `base` (a Stable
    Diffusion inpainting or Paint-by-Example checkpoint folder), the DINOv2 model of the
    transformers folder `dinov2` (with its preprocessor_config.json), a fresh projection
    and adapter (seeded), the hint encoder copied from the UNet, zero fusion, DDIM."""
    base, dinov2 = Path(base), Path(dinov2)
    base_class = read_json(base / "model_index.json").get("_class_name")
    if base_class not in (SD_INPAINT_CLASS, PBE_PIPELINE_CLASS):
        raise GeneratorError(f"{base}: a {base_class} checkpoint; expected {SD_INPAINT_CLASS} or {PBE_PIPELINE_CLASS}")
    if not (dinov2 / "config.json").is_file():
        raise GeneratorError(f"DINOv2 folder {dinov2} has no config.json (a transformers Dinov2Model folder)")
    unet = load_components(base, {"unet": lambda folder: load_strictly(UNet2DConditionModel, folder, "UNet")})["unet"]
    check_sd_style_unet(base, unet)  # before gigabytes are written
    loaded = load_components(base, {
        "vae": lambda folder: load_strictly(AutoencoderKL, folder, "VAE"),
        "scheduler": lambda folder: DDIMScheduler.from_pretrained(folder, local_files_only=True, clip_sample=False),
    })
    encoder = load_components(dinov2.parent, {
        dinov2.name: lambda folder: load_strictly(Dinov2Model, folder, "DINOv2 encoder"),
    })[dinov2.name]
    unet = _pbe_ordered_unet(unet, base_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projection = ReferenceProjection(in_features=encoder.config.hidden_size, out_features=unet.config.cross_attention_dim)
        hint = DtcHintModel.from_unet(unet, fusion=fusion, hint_sees_noisy_latent=hint_sees_noisy_latent,
                                      adapter_channels=adapter_channels, cross_attention_min_level=cross_attention_min_level,
                                      mask_channel="fill" if base_class == SD_INPAINT_CLASS else "keep")
    try:
        processor = AutoImageProcessor.from_pretrained(str(dinov2), local_files_only=True)
    except Exception as exc:
        raise GeneratorError(f"{dinov2}: no usable preprocessor_config.json: {exc}") from exc
    pipeline = DiffuseToChoosePipeline(unet=unet, vae=loaded["vae"], image_encoder=TokenReferenceEncoder("dinov2", encoder, projection),
                                       hint=hint, scheduler=loaded["scheduler"], feature_extractor=processor)
    return pipeline.save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m generators.dtc", description="Diffuse to Choose checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="build an untrained DTC from an SD-inpainting or PBE checkpoint")
    init.add_argument("out", type=Path, metavar="OUT_DIR")
    init.add_argument("--base", type=Path, required=True, help="Stable Diffusion inpainting or Paint-by-Example folder")
    init.add_argument("--dinov2", type=Path, required=True, help="transformers Dinov2Model folder (e.g. dinov2-giant)")
    init.add_argument("--fusion", choices=FUSIONS, default="film")
    init.add_argument("--hint-without-noisy-latent", action="store_true",
                      help="the hint encoder sees the hint latent alone (features computed once per image)")
    init.add_argument("--cross-attention-min-level", type=int, default=0,
                      help="cross_attention fusion from this UNet level down (0 = every level; 1 = "
                           "not at the full latent resolution, addition there)")
    init.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = build_dtc(args.base, args.dinov2, args.out, fusion=args.fusion,
                         hint_sees_noisy_latent=not args.hint_without_noisy_latent,
                         cross_attention_min_level=args.cross_attention_min_level, seed=args.seed)
    except GeneratorError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(path)


if __name__ == "__main__":
    main()
