"""Named configurations: one readable table per section (no torch import).

A config section that says `preset: NAME` starts from the row NAME of its table; keys written
beside it override the row. Parameter counts in comments are checked by tests/models.
"""

from __future__ import annotations

from typing import Any

# Efficient U-Net layouts (Saharia et al. 2022, Appendix B, scaled down). Lists are per level,
# highest resolution first; more res-blocks at low resolution; attention only at low resolution.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    # tests: 16 px, a few hundred thousand parameters
    "tiny16": dict(image_size=16, channels=[32, 64], num_res_blocks=[1, 1], self_attn=[False, True],
                   cross_attn=[False, True], head_dim=32, cond_dim=64),
    # CPU demo: 32 px, about 2M parameters
    "tiny32": dict(image_size=32, channels=[64, 128, 128], num_res_blocks=[1, 1, 2],
                   self_attn=[False, False, True], cross_attn=[False, True, True], head_dim=32,
                   cond_dim=128),
}

GAN_PRESETS: dict[str, dict[str, Any]] = {}

# config dataclass name -> its preset table (used by imagegen.config)
PRESET_TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "UNetConfig": UNET_PRESETS,
    "GANConfig": GAN_PRESETS,
}
