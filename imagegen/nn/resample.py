"""Resolution changes of the Efficient U-Net: a strided convolution down, nearest-neighbour + conv up.

Saharia et al. 2022, Appendix B: the Efficient U-Net downsamples at the start of a level (before its
convolutions) and upsamples at its end (after them), so the level's blocks run at the low resolution.
"""

from __future__ import annotations

from torch import Tensor, nn


class Downsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, H/2, W/2] by a 3x3 convolution of stride 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, 2H, 2W] by nearest-neighbour doubling and a 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
