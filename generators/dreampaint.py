"""DreamPaint (Seyfioglu et al. 2023): a few-shot "masked DreamBooth" fine-tuning of the
Stable Diffusion inpainting UNet per product, then inpainting with it and the instance prompt.

Fine-tuning, one product (its catalogue images), `recipe` steps:
    image   one of the product's images (seeded choice, horizontal flip half the time)
    product where the product is: pixels unlike the image's border colour (catalogue photos
            are shot on a plain background); the whole image when that finds too little
    fill    a random rectangle over the product's bounding box (half the time the whole box,
            else 40-100 % of each side): the region the UNet learns to inpaint
    loss    epsilon MSE on [noisy latent, fill mask, masked image latent] (SD inpainting's
            input order), weighted by the product mask at latent size
    prompt  the instance prompt with DreamBooth's rare identifier ("a photo of sks shoe")
mode = "full" trains the whole UNet (the paper's); "lora" trains PEFT LoRA adapters on the
attention projections (to_q, to_k, to_v, to_out.0), tens of MB per product at SD scale.

Every step draws its randomness from (seed, step) alone, so a fine-tuning resumed from a
saved step ends exactly where an uninterrupted one does. Progress is saved every
`save_every` steps under OUT.partial/; the finished weights are written beside OUT and
renamed into place: a reader never finds a half-written adapter.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from PIL import Image

from generators.checkpoints import read_json
from generators.devices import resolve_dtype
from generators.images import mask_bbox
from generators.pipeline_generator import CanvasPair, PipelineGenerator
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
MANIFEST = "dreampaint.json"  # in every finished fine-tuning folder
IDENTIFIER = "sks"  # DreamBooth's rare token

# The paper's scale (DreamBooth's recipe: about 400 steps at 512 px; full fine-tuning at a
# low rate, LoRA at a higher one).
DEFAULTS = {"steps": 400, "resolution": 512, "rank": 32, "batch_size": 1, "seed": 0,
            "learning_rate": {"full": 5e-6, "lora": 1e-4}}


@dataclass(frozen=True)
class Recipe:
    """How one product is fine-tuned; its hash is part of the fine-tuning's identity."""

    mode: str = "full"  # the paper's; as generators.families has it
    steps: int = DEFAULTS["steps"]
    learning_rate: float = DEFAULTS["learning_rate"]["full"]
    rank: int = DEFAULTS["rank"]
    resolution: int = DEFAULTS["resolution"]
    batch_size: int = DEFAULTS["batch_size"]
    seed: int = DEFAULTS["seed"]
    save_every: int = 0  # 0: about four saves per fine-tuning

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Recipe":
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{name: value for name, value in params.items() if name in known})

    @property
    def save_interval(self) -> int:
        return self.save_every or max(1, math.ceil(self.steps / 4))

    def as_dict(self) -> dict:
        return asdict(self)

    def hash(self) -> str:
        """What changes the weights (not how often progress is saved)."""
        payload = {key: value for key, value in self.as_dict().items() if key != "save_every"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def instance_prompt(category: str = "") -> str:
    return f"a photo of {IDENTIFIER} {category.strip() or 'product'}"


def product_mask(image: Image.Image, tolerance: int = 24) -> np.ndarray:
    """Boolean (H, W): pixels further than `tolerance` from the median border colour; the
    whole image when under 5 % of it qualifies (a product photographed edge to edge)."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    found = np.abs(pixels - background).max(axis=-1) > tolerance
    return found if found.mean() >= 0.05 else np.ones(found.shape, bool)


def load_product_images(paths: Sequence[str | Path], product: str) -> list[Image.Image]:
    """RGB images of one product; GeneratorError naming the product and each bad file."""
    if not paths:
        raise GeneratorError(f"product {product!r} has no images to fine-tune on")
    images, problems = [], []
    for path in paths:
        try:
            with Image.open(path) as handle:
                images.append(handle.convert("RGB"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
    if problems:
        raise GeneratorError(f"product {product!r}: unreadable image(s): " + "; ".join(problems))
    return images


@dataclass
class TrainingExample:
    image: torch.Tensor  # (3, R, R) in [-1, 1]
    fill: torch.Tensor  # (1, R, R), 1 = inpaint
    product: torch.Tensor  # (1, R, R), 1 = product


def _prepared(images: Sequence[Image.Image], resolution: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    prepared = []
    for image in images:
        square = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1).float() / 127.5 - 1
        prepared.append((pixels, product_mask(square)))
    return prepared


def training_example(prepared, generator: torch.Generator) -> TrainingExample:
    """One image of the product with a random fill mask over it (randomness from `generator`)."""
    draw = lambda: float(torch.rand((), generator=generator))  # noqa: E731
    pixels, product = prepared[int(torch.randint(len(prepared), (), generator=generator))]
    flip = draw() < 0.5
    box = mask_bbox(product)
    if draw() >= 0.5:  # else the whole bounding box
        height, width = max(1, round(box.height * (0.4 + 0.6 * draw()))), max(1, round(box.width * (0.4 + 0.6 * draw())))
        top = box.top + int(draw() * (box.height - height + 1))
        left = box.left + int(draw() * (box.width - width + 1))
    else:
        top, left, height, width = box.top, box.left, box.height, box.width
    fill = torch.zeros(1, *product.shape)
    fill[:, top : top + height, left : left + width] = 1
    product_tensor = torch.from_numpy(product).float()[None]
    if flip:
        pixels, fill, product_tensor = pixels.flip(-1), fill.flip(-1), product_tensor.flip(-1)
    return TrainingExample(pixels, fill, product_tensor)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def load_base(base: str | Path, device, dtype) -> StableDiffusionInpaintPipeline:
    """A Stable Diffusion inpainting checkpoint folder (diffusers layout), offline."""
    root = Path(base)
    if read_json(root / "model_index.json").get("_class_name") != "StableDiffusionInpaintPipeline":
        raise GeneratorError(f"{root}: DreamPaint's base must be a StableDiffusionInpaintPipeline checkpoint (model_index.json)")
    try:
        pipeline = StableDiffusionInpaintPipeline.from_pretrained(
            str(root), dtype=dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True
        )
    except Exception as exc:
        raise GeneratorError(f"cannot load the Stable Diffusion inpainting checkpoint {root}: {type(exc).__name__}: {exc}") from exc
    if pipeline.unet.config.in_channels != 9:
        raise GeneratorError(f"{root / 'unet'}: in_channels is {pipeline.unet.config.in_channels}, an inpainting UNet has 9")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def encode_prompt(pipeline: StableDiffusionInpaintPipeline, prompt: str) -> torch.Tensor:
    tokens = pipeline.tokenizer(prompt, padding="max_length", max_length=pipeline.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipeline.text_encoder(tokens.to(pipeline.text_encoder.device))[0]


@dataclass
class FineTuneResult:
    path: Path
    losses: list[float]  # one per step, from step 1 (resumed runs included)
    resumed_from: int  # the step the run started after (0: from the base)
    size_bytes: int
    pipeline: StableDiffusionInpaintPipeline  # the base with the trained weights, in memory


def fine_tune(
    base: str | Path,
    images: Sequence[Image.Image],
    recipe: Recipe,
    out: str | Path,
    *,
    prompt: str,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], bool] | None = None,
) -> FineTuneResult:
    """Fine-tune the base on one product's images; the finished weights land in `out`.

    on_step(step, loss) after each step (1-based); returning False stops the run after
    its last save (a cancelled or lost job). A run finds the saves of an earlier one under
    OUT.partial and goes on from the last of them."""
    out = Path(out)
    if not images:
        raise GeneratorError("no images to fine-tune on")
    if recipe.mode not in ("full", "lora"):
        raise GeneratorError(f"mode = {recipe.mode!r} is not allowed; allowed values: full, lora")
    device = torch.device(device)
    pipeline = load_base(base, device, torch.float32)  # trained in float32, as DreamBooth's recipe
    unet, vae = pipeline.unet, pipeline.vae
    vae.requires_grad_(False)
    pipeline.text_encoder.requires_grad_(False)
    unet.requires_grad_(recipe.mode == "full")
    if recipe.mode == "lora":
        from peft import LoraConfig

        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):  # the adapters' random start depends on the seed alone
            torch.manual_seed(recipe.seed)
            unet.add_adapter(LoraConfig(r=recipe.rank, lora_alpha=recipe.rank, init_lora_weights="gaussian",
                                        target_modules=LORA_TARGETS))
    trainable = [parameter for parameter in unet.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate)
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    prompt_embeds = encode_prompt(pipeline, prompt).repeat(recipe.batch_size, 1, 1)
    prepared = _prepared(images, recipe.resolution)

    partial = out.with_name(out.name + ".partial")
    losses, start = _resume(partial, unet, optimizer, recipe)
    resumed_from = start
    unet.train()
    for step in range(start + 1, recipe.steps + 1):
        loss = step_loss(pipeline, noise_scheduler, prompt_embeds, prepared, recipe, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        go_on = on_step(step, losses[-1]) if on_step is not None else True
        if step % recipe.save_interval == 0 or step == recipe.steps or go_on is False:
            _save_progress(partial, unet, optimizer, recipe, step, losses)
        if go_on is False:
            raise FineTuneStopped(step)
    unet.eval()
    size_bytes = _save_finished(out, unet, recipe, prompt, losses)
    shutil.rmtree(partial, ignore_errors=True)
    return FineTuneResult(path=out, losses=losses, resumed_from=resumed_from, size_bytes=size_bytes, pipeline=pipeline)


def step_loss(pipeline, noise_scheduler, prompt_embeds: torch.Tensor, prepared, recipe: Recipe, step: int) -> torch.Tensor:
    """The masked DreamBooth loss of `step`'s draws (images, masks, noise, timesteps all from
    (seed, step)): the same draws give the same loss, so tests compare it before and after."""
    unet, vae, device = pipeline.unet, pipeline.vae, pipeline.unet.device
    generator = _step_generator(recipe.seed, step)
    examples = [training_example(prepared, generator) for _ in range(recipe.batch_size)]
    pixels = torch.stack([e.image for e in examples]).to(device)
    fill = torch.stack([e.fill for e in examples]).to(device)
    product = torch.stack([e.product for e in examples]).to(device)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample(generator=generator) * vae.config.scaling_factor
        masked = vae.encode(pixels * (1 - fill)).latent_dist.mode() * vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(examples),), generator=generator).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    size = latents.shape[-2:]
    fill_latent = F.interpolate(fill, size=size)
    weight = F.interpolate(product, size=size, mode="area")  # the product's share of each latent pixel
    prediction = unet(torch.cat([noisy, fill_latent, masked], dim=1), timesteps, encoder_hidden_states=prompt_embeds).sample
    target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    squared = (prediction.float() - target.float()) ** 2 * weight
    return squared.sum() / (weight.sum() * prediction.shape[1]).clamp(min=1e-8)


class FineTuneStopped(Exception):
    """on_step asked to stop; the progress up to `step` is saved."""

    def __init__(self, step: int):
        super().__init__(f"stopped after step {step}")
        self.step = step


def _trainable_state(unet: UNet2DConditionModel, recipe: Recipe) -> dict:
    if recipe.mode == "lora":
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(unet)
    return unet.state_dict()


def _save_progress(partial: Path, unet, optimizer, recipe: Recipe, step: int, losses: list[float]) -> None:
    """One file per save, written then renamed: a crash mid-save leaves the previous one."""
    partial.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "losses": list(losses), "recipe": recipe.hash(),
             "weights": _trainable_state(unet, recipe), "optimizer": optimizer.state_dict()}
    written = partial / f".step-{step}.pt"
    torch.save(state, written)
    written.replace(partial / "progress.pt")


def _resume(partial: Path, unet, optimizer, recipe: Recipe) -> tuple[list[float], int]:
    saved = partial / "progress.pt"
    if not saved.is_file():
        return [], 0
    try:
        state = torch.load(saved, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: start again, cleanly
        shutil.rmtree(partial, ignore_errors=True)
        return [], 0
    if state.get("recipe") != recipe.hash():
        shutil.rmtree(partial, ignore_errors=True)
        return [], 0
    if recipe.mode == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(unet, state["weights"])
    else:
        unet.load_state_dict(state["weights"])
    optimizer.load_state_dict(state["optimizer"])
    return list(state["losses"]), int(state["step"])


def _save_finished(out: Path, unet, recipe: Recipe, prompt: str, losses: list[float]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        if recipe.mode == "lora":
            from diffusers.utils import convert_state_dict_to_diffusers

            StableDiffusionInpaintPipeline.save_lora_weights(
                built, unet_lora_layers=convert_state_dict_to_diffusers(_trainable_state(unet, recipe)),
                weight_name=LORA_WEIGHTS, safe_serialization=True,
            )
        else:
            unet.save_pretrained(built / "unet")
        manifest = {"mode": recipe.mode, "recipe": recipe.as_dict(), "recipe_hash": recipe.hash(),
                    "prompt": prompt, "losses": losses}
        (built / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        built.rename(out)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return sum(file.stat().st_size for file in out.rglob("*") if file.is_file())


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise GeneratorError(f"{folder} is not a finished DreamPaint fine-tuning (no {MANIFEST})")
    return read_json(path)


def apply_fine_tune(pipeline: StableDiffusionInpaintPipeline, folder: str | Path) -> str:
    """Put a product's fine-tuned weights into `pipeline` (replacing another product's);
    returns the instance prompt it was trained with."""
    manifest = read_manifest(folder)
    folder = Path(folder)
    if manifest["mode"] == "lora":
        pipeline.unload_lora_weights()
        pipeline.load_lora_weights(str(folder), weight_name=LORA_WEIGHTS)
    else:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", dtype=pipeline.unet.dtype, local_files_only=True)
        pipeline.unet = unet.to(pipeline.unet.device)
    return manifest["prompt"]


class DreamPaintGenerator(PipelineGenerator):
    """DreamPaint inference: the base Stable Diffusion inpainting pipeline, one product's
    fine-tuned weights at a time (`use_fine_tune`), the instance prompt it was trained with.
    Needs StableDiffusionInpaintPipeline's mask convention: white = fill, as ours."""

    family = "dreampaint"

    def __init__(self, checkpoint, **kwargs):
        super().__init__(checkpoint, **kwargs)
        self.fine_tune: Path | None = None
        self.prompt = ""

    def _load(self, dtype) -> StableDiffusionInpaintPipeline:
        return load_base(self.checkpoint, self.device, resolve_dtype(self.device, dtype))

    def use_fine_tune(self, folder: str | Path) -> None:
        """Switch to one product's weights (LoRA adapters swap in place; a full UNet replaces the base's)."""
        folder = Path(folder)
        if folder != self.fine_tune:
            self.fine_tune = None  # until the switch has succeeded
            self.prompt = apply_fine_tune(self.pipeline, folder)
            self.fine_tune = folder

    def describe(self) -> dict:
        return {**super().describe(), "fine_tune": str(self.fine_tune) if self.fine_tune else None, "prompt": self.prompt}

    def _call_pipeline(self, requests: Sequence[InpaintRequest], canvases: Sequence[CanvasPair],
                       settings: GenerationSettings) -> list[Image.Image]:
        if self.fine_tune is None:
            raise GeneratorError("DreamPaint needs a product's fine-tuning before it can inpaint (use_fine_tune)")
        return self.pipeline(
            prompt=[self.prompt] * len(requests),
            height=settings.resolution,
            width=settings.resolution,
            output_type="pil",
            **self._sampling_kwargs(requests, canvases, settings),
        ).images
