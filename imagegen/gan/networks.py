"""Text-conditional GAN networks: the DF-GAN generator and discriminator.

Owns `Generator` (noise + pooled text -> image) and `Discriminator` (image + pooled text -> logit)
and their blocks. Follows Tao et al. 2022, "DF-GAN: A Simple and Effective Baseline for
Text-to-Image Synthesis" (CVPR), Sec. 3:

- the generator maps z to a 4x4 feature map, then stacks upsampling residual blocks whose
  normalisation-free *deep fusion* layers apply a per-channel scale and shift predicted by an MLP
  of c = [z, text] (the "affine" layers), initialised to the identity (scale 1, shift 0);
- the discriminator is a stack of residual down-blocks to 4x4 features, followed by a conditional
  head: DF-GAN's conv head on [features, text broadcast over 4x4], or a projection head (Miyato &
  Koyama 2018). `features` and `head` are separate so that mismatched-text negatives and the
  contrastive term reuse the real images' features.

Channel lists are given per resolution, 4x4 first for the generator and full resolution first for
the discriminator, so both have log2(image_size) - 1 entries. Each network keeps a plain `config`
dict such that `type(net)(**net.config)` rebuilds it (for safetensors checkpoints).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imagegen.config import GANConfig
from imagegen.utils.checks import check_choice

LEAK = 0.2  # LeakyReLU slope used everywhere (DF-GAN)


def check_layout(image_size: int, channels: Sequence[int], argument: str) -> None:
    """Raise ValueError unless `image_size` is a power of 2 >= 8 and `channels` has one positive
    entry per resolution 4, 8, ..., image_size (log2(image_size) - 1 entries)."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or image_size < 8
        or image_size & (image_size - 1)
    ):
        raise ValueError(f"image_size must be a power of 2 >= 8, got {image_size!r}")
    expected = int(math.log2(image_size)) - 1
    if len(channels) != expected:
        raise ValueError(
            f"{argument} must have {expected} entries (one per resolution 4..{image_size}) for "
            f"image_size={image_size}, got {len(channels)}: {list(channels)}"
        )
    if any(int(width) <= 0 for width in channels):
        raise ValueError(f"{argument} must be positive, got {list(channels)}")


def _pairs(channels: Sequence[int]) -> list[tuple[int, int]]:
    """[c0, c1, c2] -> [(c0, c1), (c1, c2)]: (input, output) widths of consecutive blocks."""
    return list(zip(channels, channels[1:]))


def _shortcut(in_channels: int, out_channels: int) -> nn.Module:
    """Residual shortcut: a learnt 1x1 conv where the width changes, else the identity."""
    return nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


class TextAffine(nn.Module):
    """Per-channel affine from the condition: y = scale(c) * x + shift(c) (DF-GAN's "affine").

    A two-layer MLP of c predicts both; its last layer starts at weight 0, bias (1, 0), so the
    layer is the identity at initialisation whatever c is.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(), nn.Linear(channels, 2 * channels))
        last = self.mlp[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias[:channels].fill_(1.0)  # scale
            last.bias[channels:].fill_(0.0)  # shift

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], cond [B, cond_dim] -> [B, C, H, W]."""
        scale, shift = self.mlp(cond).chunk(2, dim=1)  # [B, C] each
        return scale[:, :, None, None] * x + shift[:, :, None, None]


class FusionBlock(nn.Module):
    """DF-GAN deep fusion: affine -> LeakyReLU -> affine -> LeakyReLU (no normalisation)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.affine1 = TextAffine(cond_dim, channels)
        self.affine2 = TextAffine(cond_dim, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], cond [B, cond_dim] -> [B, C, H, W]."""
        x = F.leaky_relu(self.affine1(x, cond), LEAK)
        return F.leaky_relu(self.affine2(x, cond), LEAK)


class GeneratorBlock(nn.Module):
    """Nearest x2 upsampling, then shortcut + (fuse, conv3x3, fuse, conv3x3)."""

    def __init__(self, cond_dim: int, in_channels: int, out_channels: int):
        super().__init__()
        self.fuse1 = FusionBlock(cond_dim, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.fuse2 = FusionBlock(cond_dim, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = _shortcut(in_channels, out_channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W], cond [B, cond_dim] -> [B, C_out, 2H, 2W]."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        residual = self.conv1(self.fuse1(x, cond))
        residual = self.conv2(self.fuse2(residual, cond))
        return self.shortcut(x) + residual


OUTPUTS = ("tanh", "linear")


class Generator(nn.Module):
    """DF-GAN generator: G(z [B, z_dim], text_pooled [B, text_dim]) -> image [B, 3, H, W].

    `channels[i]` is the width at resolution 4 * 2**i; the last entry is the width at image_size.
    `output`: "tanh" (DF-GAN) squashes the last convolution into (-1, 1); "linear" (StyleGAN)
    leaves it raw while training, so D sees values outside [-1, 1] and pushes them back, and
    clamps it to [-1, 1] in eval mode (EMA copies and pipelines run in eval mode). A tanh
    generator can get stuck once its output saturates (tanh' ~ 0 passes no gradient); data with
    large exact +-1 areas (Shapes' black and white backgrounds) drives it there (docs/gan.md).
    """

    def __init__(
        self, z_dim: int, text_dim: int, channels: Sequence[int], image_size: int, output: str = "tanh"
    ):
        super().__init__()
        check_layout(image_size, channels, "gen_channels")
        if z_dim <= 0 or text_dim <= 0:
            raise ValueError(f"z_dim and text_dim must be positive, got z_dim={z_dim}, text_dim={text_dim}")
        check_choice("gan.output", output, OUTPUTS)
        channels = [int(width) for width in channels]
        self.config = dict(z_dim=z_dim, text_dim=text_dim, channels=channels, image_size=image_size)
        if output != "tanh":  # written only when not the default: a tanh network.json is unchanged
            self.config["output"] = output
        self.output = output
        cond_dim = z_dim + text_dim
        self.fc = nn.Linear(z_dim, channels[0] * 4 * 4)
        self.blocks = nn.ModuleList(
            GeneratorBlock(cond_dim, width_in, width_out) for width_in, width_out in _pairs(channels)
        )
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    @classmethod
    def from_config(cls, cfg: GANConfig, text_dim: int, image_size: int | None = None) -> Generator:
        """Build from a GANConfig; `image_size` defaults to `cfg.image_size`."""
        image_size = cfg.image_size if image_size is None else image_size
        return cls(cfg.z_dim, text_dim, cfg.gen_channels, image_size, cfg.output)

    @property
    def z_dim(self) -> int:
        return self.config["z_dim"]

    def forward(self, z: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim], text_pooled [B, text_dim] -> image [B, 3, H, W], in [-1, 1] except for a
        linear-output generator in training mode."""
        cond = torch.cat([z, text_pooled.to(z.dtype)], dim=1)  # [B, z_dim + text_dim]
        x = self.fc(z).view(z.shape[0], -1, 4, 4)  # [B, C_0 * 16] -> [B, C_0, 4, 4]
        for block in self.blocks:
            x = block(x, cond)
        x = self.to_rgb(F.leaky_relu(x, LEAK))
        if self.output == "tanh":
            return torch.tanh(x)
        return x if self.training else x.clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Residual down-block: shortcut (1x1 conv if widths differ, 2x2 average pool) + gain * residual
    (conv4x4 stride 2, LeakyReLU, conv3x3, LeakyReLU). `gain` is a learnt scalar starting at 0, as in
    DF-GAN, so the discriminator starts close to a linear map and grows its residual branches."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(LEAK),
        )
        self.shortcut = _shortcut(in_channels, out_channels)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W] -> [B, C_out, H/2, W/2]."""
        return F.avg_pool2d(self.shortcut(x), 2) + self.gain * self.residual(x)


HEADS = ("concat", "projection")


class Discriminator(nn.Module):
    """DF-GAN discriminator: D(image [B, 3, H, W], text_pooled [B, text_dim]) -> logit [B].

    `channels[i]` is the width at resolution image_size / 2**i; the last entry is the width of the
    4x4 features. `head` scores the 4x4 features against a caption:

    - "concat" (DF-GAN): the text embedding broadcast over 4x4 is concatenated to the features,
      then conv3x3 (to 2 * channels[0], as DF-GAN's ndf * 2), LeakyReLU, conv4x4 -> one logit;
    - "projection" (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): with
      h = sum over 4x4 of LeakyReLU(features) [B, C], logit = w . h + b + (V e) . h, where e is the
      pooled caption and V a learnt text_dim -> C map. The caption enters as an inner product
      with the image features, so D's matching score is linear in e and its gradient tells G
      directly which feature directions the caption asks for.
    """

    def __init__(self, text_dim: int, channels: Sequence[int], image_size: int, head: str = "concat"):
        super().__init__()
        check_layout(image_size, channels, "disc_channels")
        if text_dim <= 0:
            raise ValueError(f"text_dim must be positive, got {text_dim}")
        check_choice("gan.disc_head", head, HEADS)
        channels = [int(width) for width in channels]
        self.config = dict(text_dim=text_dim, channels=channels, image_size=image_size)
        if head != "concat":  # written only when not the default: a concat network.json is unchanged
            self.config["head"] = head
        self.head_kind = head
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.Sequential(
            *(DiscriminatorBlock(width_in, width_out) for width_in, width_out in _pairs(channels))
        )
        if head == "concat":
            head_width = 2 * channels[0]
            self.joint = nn.Sequential(
                nn.Conv2d(channels[-1] + text_dim, head_width, 3, padding=1),
                nn.LeakyReLU(LEAK),
                nn.Conv2d(head_width, 1, 4),
            )
        else:
            self.unconditional = nn.Linear(channels[-1], 1)  # w . h + b
            # V starts at 0: D starts unconditional and grows its matching term from the data.
            # With a random V, the text gradient of the summed 4x4 features is large enough at
            # initialisation that MA-GP's 6th power reaches ~1e6 and its first steps wreck D.
            self.text_projection = nn.Linear(text_dim, channels[-1], bias=False)  # V e
            nn.init.zeros_(self.text_projection.weight)

    @classmethod
    def from_config(cls, cfg: GANConfig, text_dim: int, image_size: int | None = None) -> Discriminator:
        """Build from a GANConfig; `image_size` defaults to `cfg.image_size`."""
        image_size = cfg.image_size if image_size is None else image_size
        return cls(text_dim, cfg.disc_channels, image_size, cfg.disc_head)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] -> features [B, C, 4, 4] (text-independent)."""
        return self.blocks(self.stem(images))

    def head(self, features: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        """Score features against captions.

        features [B, C, 4, 4]; text_pooled [B, text_dim] -> logits [B], or text_pooled
        [N, B, text_dim] (N captions per image, e.g. matching and mismatched) -> logits [N, B].
        """
        squeeze = text_pooled.dim() == 2
        texts = text_pooled[None] if squeeze else text_pooled  # [N, B, T]
        count, batch = texts.shape[:2]
        if self.head_kind == "projection":
            pooled = F.leaky_relu(features, LEAK).sum(dim=(2, 3))  # [B, C]
            projected = self.text_projection(texts.to(pooled.dtype))  # [N, B, C]
            logits = self.unconditional(pooled)[:, 0] + (projected * pooled).sum(dim=-1)  # [N, B]
            return logits[0] if squeeze else logits
        feats = features[None].expand(count, *features.shape).flatten(0, 1)  # [N * B, C, 4, 4]
        texts = texts.flatten(0, 1).to(feats.dtype)[:, :, None, None]  # [N * B, T, 1, 1]
        texts = texts.expand(-1, -1, *feats.shape[2:])  # [N * B, T, 4, 4]
        logits = self.joint(torch.cat([feats, texts], dim=1)).view(count, batch)  # [N*B, 1, 1, 1] -> [N, B]
        return logits[0] if squeeze else logits

    def forward(self, images: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], text_pooled [B, T] or [N, B, T] -> logits [B] or [N, B]."""
        return self.head(self.features(images), text_pooled)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (works on the meta device)."""
    return sum(parameter.numel() for parameter in module.parameters())
