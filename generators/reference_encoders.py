"""Reference (product photo) encoders: what the UNet's cross-attention sees of the product.

Three kinds (METHODS.md "Paint by Example"):
- clip_cls: the original PBE encoder, diffusers' PaintByExampleImageEncoder (CLIP's pooled
  class token, a small mapper, one token). Loaded by generators.pbe in the official layout.
- clip_all: every CLIP vision token (257 for ViT-L/14 at 224 px) through CLIP's own final
  LayerNorm, then one Linear layer to the cross-attention width.
- dinov2: every DINOv2 token (CLS + 256 patches for ViT-g/14 at 224 px, already
  layer-normed by Dinov2Model) through one Linear layer. DTC's encoder too.

The token encoders live in a checkpoint as two folders: `image_encoder/` in transformers'
own CLIPVisionModel or Dinov2Model layout (so released backbone weights drop in unchanged)
and `image_projection/` (the Linear layer and the learned unconditional vector).
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from transformers import CLIPVisionModel, Dinov2Model

from generators.strict_loading import load_strictly
from generators.types import GeneratorError

TOKEN_BACKBONES: dict[str, type] = {"clip_all": CLIPVisionModel, "dinov2": Dinov2Model}


class ReferenceProjection(ModelMixin, ConfigMixin):
    """One fully connected layer from the backbone's width to the UNet's cross-attention
    width, and the learned unconditional vector used for classifier-free guidance."""

    @register_to_config
    def __init__(self, in_features: int = 1536, out_features: int = 768):
        super().__init__()
        self.proj = nn.Linear(in_features, out_features)
        # As PBE's: one vector. Repeated to the token count for guidance; attention over
        # identical keys is attention over one key, so this equals PBE's single token.
        self.uncond_vector = nn.Parameter(torch.randn(1, 1, out_features))


class TokenReferenceEncoder(nn.Module):
    """A backbone's tokens, projected. forward() keeps PaintByExampleImageEncoder's
    signature so the same pipeline code calls either."""

    def __init__(self, kind: str, backbone: nn.Module, projection: ReferenceProjection):
        super().__init__()
        if kind not in TOKEN_BACKBONES:
            raise GeneratorError(f"encoder {kind!r} is not a token encoder; allowed: {', '.join(TOKEN_BACKBONES)}")
        self.kind = kind
        self.backbone = backbone
        self.projection = projection

    @property
    def proj_size(self) -> int:
        return self.projection.config.out_features

    @property
    def dtype(self) -> torch.dtype:  # DiffusionPipeline.to() asks its modules
        return self.projection.dtype

    @property
    def device(self) -> torch.device:
        return self.projection.device

    def forward(self, pixel_values: torch.Tensor, return_uncond_vector: bool = False):
        hidden = self.backbone(pixel_values=pixel_values).last_hidden_state
        if self.kind == "clip_all":
            # CLIP applies its final LayerNorm to the pooled token only; all tokens get it here.
            hidden = self.backbone.post_layernorm(hidden)
        tokens = self.projection.proj(hidden)
        if return_uncond_vector:
            return tokens, self.projection.uncond_vector
        return tokens


def build_token_encoder(kind: str, backbone_config, out_features: int) -> TokenReferenceEncoder:
    """A randomly initialised token encoder (tiny checkpoints, and configs on the meta device)."""
    backbone = TOKEN_BACKBONES[kind](backbone_config)
    projection = ReferenceProjection(in_features=backbone_config.hidden_size, out_features=out_features)
    return TokenReferenceEncoder(kind, backbone, projection)


def save_token_encoder(encoder: TokenReferenceEncoder, root: Path) -> None:
    encoder.backbone.save_pretrained(root / "image_encoder")
    encoder.projection.save_pretrained(root / "image_projection")


def load_token_encoder(kind: str, root: Path, dtype: torch.dtype) -> TokenReferenceEncoder:
    """image_encoder/ (transformers layout) and image_projection/ of the checkpoint `root`;
    GeneratorError naming the folder and the mismatch otherwise."""
    backbone_dir, projection_dir = root / "image_encoder", root / "image_projection"
    loaded = {}
    for folder, load in (
        (backbone_dir, lambda: load_strictly(TOKEN_BACKBONES[kind], backbone_dir, f"{kind} encoder", dtype=dtype)),
        (projection_dir, lambda: load_strictly(ReferenceProjection, projection_dir, "projection", dtype=dtype)),
    ):
        try:
            loaded[folder] = load()
        except GeneratorError:
            raise
        except Exception as exc:
            raise GeneratorError(f"cannot load {folder}: {type(exc).__name__}: {exc}") from exc
    backbone, projection = loaded[backbone_dir], loaded[projection_dir]
    width = backbone.config.hidden_size
    if projection.config.in_features != width:
        raise GeneratorError(
            f"{projection_dir}: the projection takes {projection.config.in_features} features, "
            f"the {kind} encoder in {backbone_dir} gives {width}"
        )
    return TokenReferenceEncoder(kind, backbone, projection)


def encode_reference(
    encoder: nn.Module, pixel_values: torch.Tensor, classifier_free_guidance: bool, copies: int = 1
) -> torch.Tensor:
    """Cross-attention tokens for a batch of references, (B * copies, N, D); with guidance,
    twice that, the unconditional half first, as diffusers' pipelines order it."""
    dtype = next(encoder.parameters()).dtype
    tokens, uncond = encoder(pixel_values.to(dtype=dtype), return_uncond_vector=True)
    tokens = tokens.repeat_interleave(copies, dim=0)
    if not classifier_free_guidance:
        return tokens
    return torch.cat([uncond.to(tokens.dtype).expand_as(tokens), tokens])
