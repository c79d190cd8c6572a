"""The one place that turns config names into objects (datasets, encoders, caches, networks).

Everything above this layer (training, cascade, evaluation, cli) builds components through these
functions, so a new dataset kind, encoder or network is registered here and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imagegen.config import (
    MAX_LEVELS,
    MAX_PARAMETERS,
    ClipConfig,
    DataConfig,
    DiffusionConfig,
    GANConfig,
    RunConfig,
    TextConfig,
    UNetConfig,
    config_to_dict,
)

DATA_KINDS = ("shapes", "folder")
CACHE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def build_dataset(data: DataConfig, resolution: int | None = None):
    """The training dataset a DataConfig names (`resolution` overrides data.resolution)."""
    resolution = resolution or data.resolution
    if data.kind == "shapes":
        from imagegen.data.shapes import ShapesDataset

        return ShapesDataset(
            resolution=resolution,
            seed=data.seed,
            length=data.length,
            scene_kinds=tuple(data.scene_kinds),
            scene_weights=tuple(data.scene_weights),
            exclude=[tuple(pair) for pair in data.exclude],
        )
    if data.kind == "folder":
        from imagegen.data.folder import CaptionedFolderDataset

        if not data.path:
            raise ValueError("data.path: a folder dataset needs the path of an image folder")
        return CaptionedFolderDataset(
            data.path,
            resolution=resolution,
            background=data.background,
            hflip=data.hflip,
            seed=data.seed,
            caption_column=data.caption_column or None,
            image_dir=data.image_dir or None,
        )
    raise ValueError(f"data.kind: unknown dataset kind {data.kind!r}; allowed: {', '.join(DATA_KINDS)}")


def build_text_encoder(text: TextConfig, device: str | torch.device = "cpu"):
    from imagegen.text import build_text_encoder as build

    return build(text.encoder, text.name_or_path, max_length=text.max_length, device=device)


def open_text_cache(text: TextConfig, identity: dict[str, Any], root: str | Path | None = None):
    """The embedding cache for one encoder identity under text.cache_dir (the layout of
    `imagegen.text.cache.cache_folder`, the same as `EmbeddingCache.for_encoder`)."""
    from imagegen.text import EmbeddingCache

    if text.cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"text.cache_dtype: {text.cache_dtype!r}; allowed: {', '.join(CACHE_DTYPES)}")
    return EmbeddingCache.for_identity(root or text.cache_dir, identity, dtype=CACHE_DTYPES[text.cache_dtype])


def build_unet(model: UNetConfig, text_dim: int, prediction: str | None = None) -> nn.Module:
    """The U-Net of `model`; `prediction` (the run's diffusion.prediction) is saved with it."""
    from imagegen.models import EfficientUNet

    if model.text_dim != text_dim:
        raise ValueError(
            f"model.text_dim is {model.text_dim} but the text encoder gives {text_dim}-d "
            f"embeddings; set model.text_dim={text_dim}"
        )
    return EfficientUNet.from_config_dataclass(model, prediction_type=prediction)


def build_prior(cfg: RunConfig, embed_dim: int, text_width: int) -> nn.Module:
    """unCLIP's diffusion prior for a CLIP of joint width `embed_dim` and text width `text_width`."""
    from imagegen.models.prior import DiffusionPrior

    prior = cfg.prior
    return DiffusionPrior(
        embed_dim=embed_dim,
        text_width=text_width,
        num_tokens=cfg.text.max_length,
        layers=prior.layers,
        heads=prior.heads,
        head_dim=prior.head_dim,
        dropout=prior.dropout,
        prediction_type=cfg.diffusion.prediction,
    )


def load_prior(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A saved DiffusionPrior (config.json + safetensors, bounded like a U-Net) in eval mode."""
    from imagegen.models.prior import DiffusionPrior

    return _load_model_mixin(DiffusionPrior, Path(folder), device)


def build_diffusion(diffusion: DiffusionConfig):
    from imagegen.diffusion import GaussianDiffusion

    return GaussianDiffusion(diffusion.schedule, diffusion.num_timesteps, diffusion.prediction)


def build_diffusion_loss(diffusion_cfg: DiffusionConfig, diffusion):
    from imagegen.diffusion import DiffusionLoss

    return DiffusionLoss(
        diffusion,
        weighting=diffusion_cfg.loss_weighting,
        min_snr_gamma=diffusion_cfg.min_snr_gamma,
        noise_offset=diffusion_cfg.noise_offset,
        timestep_sampling=diffusion_cfg.timestep_sampling,
        timestep_mean=diffusion_cfg.timestep_mean,
        timestep_std=diffusion_cfg.timestep_std,
    )


def build_gan(gan: GANConfig, text_dim: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    from imagegen.gan import Discriminator, Generator

    return (
        Generator.from_config(gan, text_dim, image_size),
        Discriminator.from_config(gan, text_dim, image_size),
    )


def build_clip_tokenizer(clip: ClipConfig):
    """The CLIP's CaptionTokenizer: clip.tokenizer's folder ("" = bundled) at clip.max_length."""
    from imagegen.clip import CaptionTokenizer, load_tokenizer
    from imagegen.clip.tokens import BUNDLED_TOKENIZER

    name = str(Path(clip.tokenizer).expanduser().resolve()) if clip.tokenizer else BUNDLED_TOKENIZER
    return CaptionTokenizer(load_tokenizer(clip.tokenizer), clip.max_length, name=name)


def build_clip(clip: ClipConfig, tokens) -> nn.Module:
    """A fresh transformers CLIPModel of `clip`'s size, for the vocabulary of `tokens`."""
    from imagegen.clip import build_clip as build

    return build(clip, tokens)


# ------------------------------------------------------------------------------------------------
# Networks that are not diffusers ModelMixins: safetensors weights + a JSON config
# ------------------------------------------------------------------------------------------------

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "network.json"


def save_network(network: nn.Module, folder: Path) -> None:
    """Write `network.config` (a JSON-able dict) and its weights (safetensors)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    config = getattr(network, "config", {})
    config = config if isinstance(config, dict) else config_to_dict(config)
    (folder / CONFIG_FILE).write_text(
        json.dumps({"class": type(network).__name__, "config": config}, indent=2)
    )


NETWORK_CLASSES = ("Generator", "Discriminator")  # what load_network rebuilds (imagegen.gan)


def load_network(folder: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a network written by `save_network`: class and config from network.json, weights
    from safetensors (no pickle). Raises FileNotFoundError / ValueError naming what is wrong."""
    from safetensors.torch import load_file

    from imagegen import gan
    from imagegen.utils.integrity import read_checked_json

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a saved network (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    saved = read_checked_json(folder / CONFIG_FILE)
    if saved.get("class") not in NETWORK_CLASSES:
        raise ValueError(
            f"{folder / CONFIG_FILE}: cannot rebuild class {saved.get('class')!r}; "
            f"known: {', '.join(NETWORK_CLASSES)}"
        )
    if not isinstance(saved.get("config"), dict):
        raise ValueError(f"{folder / CONFIG_FILE}: 'config' must be a JSON object")
    try:
        network = getattr(gan, saved["class"])(**check_architecture(folder / CONFIG_FILE, saved["config"]))
        network.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device=str(map_location)))
    except BUILD_ERRORS as error:
        raise _mismatch(folder, CONFIG_FILE, error) from None
    return network.to(map_location).eval()


# ------------------------------------------------------------------------------------------------
# Saved architectures are untrusted input: bounded before anything is allocated
# ------------------------------------------------------------------------------------------------

MAX_WIDTH = 16_384  # the largest integer an architecture field (width, size, dim, count) may hold
# what a constructor or load_state_dict raises for a saved config that does not fit its weights
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, KeyError, IndexError, AttributeError)


def _mismatch(folder: Path, config_file: str, error: BaseException) -> ValueError:
    """A CorruptCheckpointError naming the folder, for a config and weights that do not fit."""
    from imagegen.utils.integrity import CorruptCheckpointError

    reason = " ".join(str(error).split())[:300]
    return CorruptCheckpointError(
        f"{folder}: {config_file} and the weights do not make a network ({type(error).__name__}: {reason})"
    )


def check_architecture(source: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Return `config` (a network's saved constructor arguments) if every integer field and list
    entry is in [0, MAX_WIDTH], lists have at most MAX_LEVELS entries, and the channel lists
    make at most about MAX_PARAMETERS weights; else a ValueError naming `source` and the field."""
    weights = 0
    for key, value in config.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(values) > MAX_LEVELS:
            raise ValueError(f"{source}: {key} has {len(values)} entries, more than {MAX_LEVELS}")
        for item in values:
            if isinstance(item, int) and not isinstance(item, bool) and not 0 <= item <= MAX_WIDTH:
                raise ValueError(f"{source}: {key}={value!r} is outside [0, {MAX_WIDTH}] (a tampered file?)")
        if "channels" in key and isinstance(value, (list, tuple)):
            weights += sum(18 * item**2 for item in values if isinstance(item, int))
    if weights > MAX_PARAMETERS:
        raise ValueError(
            f"{source}: the channel lists make about {weights:.2e} weights, over {MAX_PARAMETERS:.0e}"
        )
    return config


def load_unet(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An EfficientUNet saved with save_pretrained, from safetensors only (diffusers would fall back
    to a pickled `diffusion_pytorch_model.bin`), its config.json bounded first. Always float32,
    whatever the file stores (the bundled model is stored in float16 to halve its size)."""
    from imagegen.models import EfficientUNet

    return _load_model_mixin(EfficientUNet, Path(folder), device)


def _load_model_mixin(model_class: type, folder: Path, device: str | torch.device) -> nn.Module:
    """A diffusers ModelMixin from safetensors only, its config.json bounded first, float32, eval."""
    from imagegen.utils.integrity import read_checked_json

    weights = folder / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (weights are read from safetensors only)")
    config = read_checked_json(folder / "config.json")
    check_architecture(folder / "config.json", {k: v for k, v in config.items() if not k.startswith("_")})
    try:
        model = model_class.from_pretrained(str(folder), use_safetensors=True, torch_dtype=torch.float32)
    except BUILD_ERRORS as error:
        raise _mismatch(folder, "config.json", error) from None
    return model.to(device).eval()


def check_prediction(model: nn.Module, diffusion: DiffusionConfig, source: str | Path) -> None:
    """ValueError when a loaded U-Net's saved prediction type is not the run's diffusion.prediction
    (a model saved before the type was recorded has None and is read as the config says)."""
    saved = getattr(model.config, "prediction_type", None)
    if saved is not None and saved != diffusion.prediction:
        raise ValueError(
            f"{source}: the U-Net was saved predicting {saved!r} but the config says "
            f"diffusion.prediction={diffusion.prediction!r}"
        )
