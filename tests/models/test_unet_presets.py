"""Every U-Net preset builds; large ones are checked on the meta device (no memory allocated)."""

from __future__ import annotations

import pytest
import torch

from imagegen.config import UNetConfig, config_from_dict
from imagegen.models import EfficientUNet
from imagegen.presets import UNET_PRESETS

# documented parameter targets (presets.py comments), text_dim 384
LARGE_TARGETS = {"base64-100m": 100e6, "base64-300m": 300e6, "sr256": 130e6, "sr1024": 100e6}


def meta_model(preset: str) -> EfficientUNet:
    cfg = config_from_dict({"preset": preset}, UNetConfig)
    with torch.device("meta"):
        return EfficientUNet.from_config_dataclass(cfg)


def test_every_preset_is_a_valid_unet_config():
    for name in UNET_PRESETS:
        cfg = config_from_dict({"preset": name}, UNetConfig)
        assert len(cfg.channels) == len(cfg.num_res_blocks) == len(cfg.self_attn) == len(cfg.cross_attn)
    assert set(LARGE_TARGETS) <= set(UNET_PRESETS)


@pytest.mark.parametrize("preset", sorted(LARGE_TARGETS))
def test_large_preset_size_and_shape_on_meta(preset):
    model = meta_model(preset)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / LARGE_TARGETS[preset] - 1) <= 0.15, f"{preset}: {params / 1e6:.1f}M"
    cfg = model.config
    size = min(cfg.image_size, 256)  # sr1024 is trained on 256 px crops
    with torch.device("meta"):
        cond = dict(
            x_t=torch.empty(2, 3, size, size),
            t=torch.zeros(2),
            text_tokens=torch.empty(2, 8, cfg.text_dim),
            text_mask=torch.ones(2, 8, dtype=torch.bool),
            text_pooled=torch.empty(2, cfg.text_dim),
        )
        if cfg.lowres_cond:
            cond.update(lowres=torch.empty(2, 3, size // 4, size // 4), aug_level=torch.zeros(2))
        out = model(**cond)
    assert out.shape == (2, 3, size, size) and out.device.type == "meta"


def test_tiny32_is_about_two_million_parameters():
    params = sum(p.numel() for p in meta_model("tiny32").parameters())
    assert 1.5e6 <= params <= 2.5e6


def test_sr1024_has_no_self_attention_and_cross_attention_only_at_low_resolution():
    cfg = meta_model("sr1024").config
    assert not any(cfg.self_attn)
    assert cfg.cross_attn[-1] and not any(cfg.cross_attn[:2])
