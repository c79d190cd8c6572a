"""Other implementations' U-Nets at about the parameters of ours, behind our denoiser signature.

`build_baseline(name, preset, device, text_dim)` returns a network called as
`network(x_t, t, text_tokens, text_mask, text_pooled)` (our interface, docs/design.md), so the
benchmarks time every model through the same loss, optimizer and sampler code.

- "diffusers": `UNet2DConditionModel`, Stable-Diffusion-style blocks (a transformer block with
  self-attention, cross-attention and a GEGLU feed-forward after every res-block of the attention
  levels), the pooled text added to the time embedding (`class_embed_type="projection"`).
- "imagen-pytorch": lucidrains' `Unet` (PyPI `imagen-pytorch`), Imagen's layout as that package
  builds it; continuous time t / T in [0, 1]. Only its `imagen_pytorch.imagen_pytorch` module is
  imported (the package's `__init__` pulls in its trainer, datasets and pydantic); its default T5
  width is registered offline so that the import does not reach the Hugging Face hub.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import torch
from torch import nn

# preset -> diffusers UNet2DConditionModel arguments (parameter counts on the right, ours first)
DIFFUSERS_MATCH = {
    # 0.55M vs 0.52M
    "tiny16": dict(
        sample_size=16, block_out_channels=[32, 32], layers_per_block=1, attention_head_dim=[1, 1]
    ),
    # 98.3M vs 100.6M; attention_head_dim is diffusers' (legacy) name for the number of heads: width 64
    "base64-100m": dict(
        sample_size=64,
        block_out_channels=[128, 192, 320, 448],
        layers_per_block=2,
        attention_head_dim=[2, 3, 5, 7],
    ),
}
# preset -> imagen_pytorch.Unet arguments
IMAGEN_MATCH = {
    "tiny16": dict(
        dim=16,
        dim_mults=(1, 2),
        num_resnet_blocks=1,
        cond_dim=64,
        layer_attns=(False, True),
        layer_cross_attns=(False, True),
        attn_heads=2,
        attn_dim_head=16,
    ),
    # 98.3M vs 98.2M
    "base64-100m": dict(
        dim=128,
        dim_mults=(1, 2, 3, 4),
        num_resnet_blocks=2,
        cond_dim=512,
        layer_attns=(False, True, True, True),
        layer_cross_attns=(False, True, True, True),
        attn_heads=8,
        attn_dim_head=64,
    ),
}


class DiffusersUNet(nn.Module):
    def __init__(self, preset: str, text_dim: int) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        spec = DIFFUSERS_MATCH[preset]
        levels = len(spec["block_out_channels"])
        self.unet = UNet2DConditionModel(
            in_channels=3,
            out_channels=3,
            cross_attention_dim=text_dim,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=text_dim,
            down_block_types=["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1),
            up_block_types=["CrossAttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"],
            **spec,
        )

    def forward(self, x_t, t, text_tokens, text_mask, text_pooled):
        return self.unet(
            x_t,
            t,
            encoder_hidden_states=text_tokens,
            encoder_attention_mask=text_mask,
            class_labels=text_pooled,
        ).sample


def _import_imagen_unet():
    """imagen_pytorch.imagen_pytorch.Unet without the package __init__ and without the hub."""
    if "imagen_pytorch" not in sys.modules:
        spec = importlib.util.find_spec("imagen_pytorch")  # locates the package without running it
        if spec is None:
            raise ImportError("imagen-pytorch is not installed (carry its wheel: benchmarks/gpu_wheels.sh)")
        package = types.ModuleType("imagen_pytorch")
        package.__spec__, package.__path__ = spec, list(spec.submodule_search_locations)
        sys.modules["imagen_pytorch"] = package
    t5 = importlib.import_module("imagen_pytorch.t5")
    from transformers import T5Config

    # `Unet`'s default text_embed_dim asks the hub for t5-v1_1-base's config at import time
    t5.T5_CONFIGS.setdefault(t5.DEFAULT_T5_NAME, {"config": T5Config(d_model=768)})
    return importlib.import_module("imagen_pytorch.imagen_pytorch").Unet


class ImagenPytorchUNet(nn.Module):
    def __init__(self, preset: str, text_dim: int, num_timesteps: int = 1000) -> None:
        super().__init__()
        unet_class = _import_imagen_unet()
        self.unet = unet_class(
            channels=3, text_embed_dim=text_dim, memory_efficient=False, **IMAGEN_MATCH[preset]
        )
        self.num_timesteps = num_timesteps

    def forward(self, x_t, t, text_tokens, text_mask, text_pooled):
        time = t.float() / self.num_timesteps  # its continuous time in [0, 1]
        return self.unet(x_t, time, text_embeds=text_tokens, text_mask=text_mask)


def build_baseline(name: str, preset: str, device: torch.device, text_dim: int) -> tuple[nn.Module, str]:
    """(network with our denoiser signature, a note); ImportError when its package is absent."""
    torch.manual_seed(0)
    if name == "diffusers":
        return DiffusersUNet(preset, text_dim).to(device), "UNet2DConditionModel, SD-style blocks"
    if name == "imagen-pytorch":
        return ImagenPytorchUNet(preset, text_dim).to(device), "imagen_pytorch.Unet"
    raise ValueError(f"unknown baseline {name!r}; allowed: diffusers, imagen-pytorch")
