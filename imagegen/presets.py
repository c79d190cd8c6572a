"""Named configurations: one readable table per section (no torch import).

A config section that says `preset: NAME` starts from the row NAME of its table; keys written
beside it override the row. Parameter counts in comments are checked by tests/models.
"""

from __future__ import annotations

from typing import Any

# Efficient U-Net layouts (Saharia et al. 2022, Appendix B, scaled down). Lists are per level,
# highest resolution first; more res-blocks at low resolution; attention only at low resolution.
# fmt: off
UNET_PRESETS: dict[str, dict[str, Any]] = {
    # tests: 16 px, about 0.55M parameters
    "tiny16": dict(image_size=16, channels=[32, 64], num_res_blocks=[1, 1], self_attn=[False, True],
                   cross_attn=[False, True], head_dim=32, cond_dim=64),
    # CPU demo base stage: 32 px, about 2.1M parameters (text_dim 384)
    "tiny32": dict(image_size=32, channels=[32, 64, 96], num_res_blocks=[1, 2, 2],
                   self_attn=[False, False, True], cross_attn=[False, True, True], head_dim=32,
                   cond_dim=128),
    # tests: super-resolution 16 -> 32, no self-attention (fully convolutional), about 0.67M
    "sr32": dict(image_size=32, channels=[32, 64], num_res_blocks=[1, 2], self_attn=[False, False],
                 cross_attn=[False, True], head_dim=32, cond_dim=64, lowres_cond=True),
    # CPU super-resolution 32 -> 64, no self-attention, about 2.0M
    "sr64-tiny": dict(image_size=64, channels=[32, 64, 96], num_res_blocks=[1, 2, 2],
                      self_attn=[False, False, False], cross_attn=[False, False, True], head_dim=32,
                      cond_dim=128, lowres_cond=True),
    # base 64 px, about 98M (Imagen's 2B base layout: widths x[1, 2, 3, 4], attention at 32/16/8 px)
    "base64-100m": dict(image_size=64, channels=[128, 256, 384, 512], num_res_blocks=[2, 3, 3, 4],
                        self_attn=[False, True, True, True], cross_attn=[False, True, True, True],
                        head_dim=64, cond_dim=512),
    # base 64 px, about 304M (same layout, wider)
    "base64-300m": dict(image_size=64, channels=[256, 512, 768, 1024], num_res_blocks=[2, 2, 2, 3],
                        self_attn=[False, True, True, True], cross_attn=[False, True, True, True],
                        head_dim=64, cond_dim=768),
    # super-resolution 64 -> 256, about 130M (Imagen's 600M SR layout at half width: blocks
    # [2, 4, 8, 8], attention only at the lowest resolution)
    "sr256": dict(image_size=256, channels=[64, 128, 256, 512], num_res_blocks=[2, 4, 8, 8],
                  self_attn=[False, False, False, True], cross_attn=[False, False, False, True],
                  head_dim=64, cond_dim=512, lowres_cond=True),
    # super-resolution 256 -> 1024, about 100M; no self-attention (trained on 256 px crops, samples
    # at 1024 px), cross-attention only at the lowest resolution
    "sr1024": dict(image_size=1024, channels=[64, 128, 256, 512], num_res_blocks=[2, 4, 6, 6],
                   self_attn=[False, False, False, False], cross_attn=[False, False, False, True],
                   head_dim=64, cond_dim=512, lowres_cond=True),
}

# DF-GAN layouts (Tao et al. 2022). gen_channels per resolution 4x4 first, disc_channels full
# resolution first. Parameter counts (G + D) with 384-d pooled text and D's concat head (the
# projection head's D: docs/gan.md), checked by tests/gan.
GAN_PRESETS: dict[str, dict[str, Any]] = {
    # tests: 16 px, 0.15M + 0.16M
    "gan-tiny16": dict(image_size=16, z_dim=32, gen_channels=[32, 32, 16], disc_channels=[16, 32, 32]),
    # CPU demo (10-minute run): 32 px, 0.95M + 0.77M
    "gan-tiny32": dict(image_size=32, z_dim=64, gen_channels=[96, 96, 64, 32],
                       disc_channels=[32, 64, 96, 96]),
    # GPU: DF-GAN widths (ngf = ndf = 32 at 256 px, capped at 256) cut to 32 / 64 / 128 px;
    # gan32 4.18M + 3.81M, gan64 6.39M + 3.52M, gan128 8.59M + 5.16M
    "gan32": dict(image_size=32, z_dim=100, gen_channels=[256, 256, 128, 64],
                  disc_channels=[64, 128, 256, 256]),
    "gan64": dict(image_size=64, z_dim=100, gen_channels=[256, 256, 256, 128, 64],
                  disc_channels=[32, 64, 128, 256, 256]),
    "gan128": dict(image_size=128, z_dim=100, gen_channels=[256, 256, 256, 256, 128, 64],
                   disc_channels=[32, 64, 128, 256, 256, 256]),
}

# fmt: on

# config dataclass name -> its preset table (used by imagegen.config)
PRESET_TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "UNetConfig": UNET_PRESETS,
    "GANConfig": GAN_PRESETS,
}
