"""Imagen's Efficient U-Net: the text-conditional denoiser of every diffusion stage.

Saharia et al. 2022 (Imagen), Appendix B. Owns `EfficientUNet`, built from `UNetConfig` fields:
per-level widths, res-block counts (more at low resolution) and attention flags; downsampling
before and upsampling after each level's convolutions; skip connections scaled by 1/sqrt(2); the
timestep embedding plus the projected pooled text embedding (plus, for super-resolution, the
embedded noise-augmentation level) as the FiLM vector of every res-block; cross-attention to the
projected text tokens with a learned null token; and, when `lowres_cond`, the low-resolution image
upsampled bilinearly and concatenated to x_t. Text embeddings are layer-normalised before pooling
and attention (Imagen, Section 2.2). Saving and loading go through diffusers' `ModelMixin`, and so
does activation checkpointing: `enable_gradient_checkpointing()` recomputes each level (DBlock,
middle, UBlock) in the backward pass instead of storing its activations.
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from imagegen.config import UNetConfig
from imagegen.models.unet_levels import DecoderLevel, EncoderLevel, LevelBody
from imagegen.nn import TimestepEmbedding, group_norm


def _check_layout(
    channels: list[int], num_res_blocks: list[int], self_attn: list[bool], cross_attn: list[bool]
) -> None:
    """ValueError naming the field when the per-level lists disagree or hold impossible values."""
    lengths = {
        "channels": len(channels),
        "num_res_blocks": len(num_res_blocks),
        "self_attn": len(self_attn),
        "cross_attn": len(cross_attn),
    }
    if len(set(lengths.values())) != 1 or not channels:
        raise ValueError(
            f"per-level lists must have one equal, non-zero length (one per level); got {lengths}"
        )
    if min(channels) <= 0:
        raise ValueError(f"channels must all be positive; got {channels}")
    if min(num_res_blocks) < 1:
        raise ValueError(f"num_res_blocks must all be at least 1; got {num_res_blocks}")


PREDICTION_TYPES = ("eps", "v", "x0", None)  # None: a folder written before the type was saved
IMAGE_TOKENS = 4  # context tokens an image embedding is projected into (unCLIP's decoder: four)


class EfficientUNet(ModelMixin, ConfigMixin):
    """Denoiser `model(x_t, t, text_tokens, text_mask, text_pooled[, lowres, aug_level])`.

    Constructor arguments are the fields of `imagegen.config.UNetConfig` (except `preset`); build one
    from that dataclass with `EfficientUNet.from_config_dataclass(cfg)`. Lists are per level, the
    highest resolution first; level i runs at image_size / 2**i.

    Fully convolutional: any H, W divisible by 2**(levels - 1) is accepted (a stage trained on
    crops samples at full size; self-attention levels then cost more, nothing else changes).
    `image_size` is recorded in the config for the stage that uses the model; it is not enforced.
    `prediction_type` ("eps" | "v" | "x0", what the output means; None in folders written before it
    was recorded) is saved in config.json so the weights say how to read them; the network itself
    does not use it.
    """

    _supports_gradient_checkpointing = True  # diffusers' enable_gradient_checkpointing(): per level

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: list[int] | tuple[int, ...] = (64, 128),
        num_res_blocks: list[int] | tuple[int, ...] = (1, 2),
        self_attn: list[bool] | tuple[bool, ...] = (False, True),
        cross_attn: list[bool] | tuple[bool, ...] = (False, True),
        head_dim: int = 32,
        text_dim: int = 384,
        cond_dim: int = 256,
        dropout: float = 0.0,
        lowres_cond: bool = False,
        image_embed_dim: int = 0,
        prediction_type: str | None = None,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type: {prediction_type!r}; allowed: eps, v, x0 (or None: unknown)")
        channels, num_res_blocks = list(channels), list(num_res_blocks)
        self_attn, cross_attn = list(self_attn), list(cross_attn)
        _check_layout(channels, num_res_blocks, self_attn, cross_attn)
        self.num_levels = len(channels)
        self.gradient_checkpointing = False  # set by enable_gradient_checkpointing() (ModelMixin)

        # conditioning vector: time (+ augmentation level) + pooled text, all [B, cond_dim]
        self.time_embed = TimestepEmbedding(cond_dim)
        self.aug_embed = TimestepEmbedding(cond_dim) if lowres_cond else None
        self.pooled_proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, cond_dim))
        token_proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, cond_dim))
        self.token_proj = token_proj if any(cross_attn) else None  # unused params would get no grad
        # unCLIP's decoder (Ramesh et al. 2022, §2.1): a CLIP image embedding z_i [B, E] is projected
        # and added to the timestep embedding, and projected into IMAGE_TOKENS extra context tokens
        # appended to the caption's (always projected, whatever E is: DALLE2-pytorch skips the
        # projection when the widths agree)
        if image_embed_dim:
            self.image_emb_proj = nn.Linear(image_embed_dim, cond_dim)
            self.image_token_proj = nn.Linear(image_embed_dim, IMAGE_TOKENS * text_dim)

        image_channels = in_channels * (2 if lowres_cond else 1)
        self.init_conv = nn.Conv2d(image_channels, channels[0], kernel_size=3, padding=1)
        levels = range(self.num_levels)
        previous = [channels[0]] + channels[:-1]  # width of the level above each level
        self.encoder = nn.ModuleList(
            EncoderLevel(previous[i], channels[i], downsample=i > 0, **self._body_args(i)) for i in levels
        )
        self.middle = LevelBody(channels[-1], channels[-1], **{**self._body_args(-1), "num_blocks": 1})
        self.decoder = nn.ModuleList(  # executed lowest resolution first
            DecoderLevel(channels[i], previous[i], upsample=i > 0, **self._body_args(i))
            for i in reversed(levels)
        )
        self.out = nn.Sequential(
            group_norm(channels[0]), nn.SiLU(), nn.Conv2d(channels[0], out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)  # a fresh model predicts 0: a stable start
        nn.init.zeros_(self.out[-1].bias)

    def _body_args(self, level: int) -> dict:
        """`LevelBody` arguments of level `level` (negative counts from the lowest resolution)."""
        cfg = self.config
        return dict(
            num_blocks=cfg.num_res_blocks[level],
            self_attn=cfg.self_attn[level],
            context_dim=cfg.cond_dim if cfg.cross_attn[level] else None,
            emb_dim=cfg.cond_dim,
            head_dim=cfg.head_dim,
            dropout=cfg.dropout,
        )

    @classmethod
    def from_config_dataclass(cls, cfg: UNetConfig, prediction_type: str | None = None) -> EfficientUNet:
        """Build from a resolved `UNetConfig` (its `preset` already merged by `imagegen.config`) and
        the run's `diffusion.prediction` (recorded in the saved config)."""
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "preset"}
        return cls(**fields, prediction_type=prediction_type)

    @property
    def downsampling_factor(self) -> int:
        """H and W of x_t must be multiples of this: 2**(levels - 1)."""
        return 2 ** (self.num_levels - 1)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        text_tokens: Tensor,
        text_mask: Tensor,
        text_pooled: Tensor,
        lowres: Tensor | None = None,
        aug_level: Tensor | None = None,
        image_embed: Tensor | None = None,
    ) -> Tensor:
        """Predict the network target (eps, v or x0; the diffusion config decides) for x_t.

        Args:
            x_t: [B, in_channels, H, W] noisy image; H, W multiples of `downsampling_factor`.
            t: [B] (or a scalar) integer or float timesteps in [0, num_timesteps).
            text_tokens: [B, L, text_dim] token embeddings.
            text_mask: [B, L] bool, True for real tokens; False tokens cannot change the output.
            text_pooled: [B, text_dim] pooled prompt embedding.
            lowres: [B, in_channels, h, w] low-resolution image in [-1, 1] (super-resolution only;
                upsampled bilinearly to H x W here).
            aug_level: [B] (or a scalar) noise-augmentation level of `lowres`, in the same units
                as t (timesteps in [0, num_timesteps)); super-resolution only.
            image_embed: [B, image_embed_dim] CLIP image embedding (unCLIP decoders only, built
                with image_embed_dim > 0; all zeros is the dropped, unconditional embedding).

        Returns:
            [B, out_channels, H, W] in the dtype of x_t.
        """
        self._check_inputs(x_t, t, text_tokens, text_mask, text_pooled, lowres, aug_level)
        self._check_image_embed(image_embed, x_t.shape[0])
        if image_embed is not None:
            text_tokens, text_mask = self._append_image_tokens(text_tokens, text_mask, image_embed)
        emb, context = self._conditioning(
            t, text_tokens, text_pooled, aug_level, batch=x_t.shape[0], image_embed=image_embed
        )
        x = self._input_image(x_t, lowres)  # [B, in_channels (x2 for SR), H, W]
        x = self.init_conv(x.to(emb.dtype))  # [B, channels[0], H, W]
        skips = []
        for level in self.encoder:
            x = self._run_level(level, x, emb, context, text_mask)
            skips.append(x)
        x = self._run_level(self.middle, x, emb, context, text_mask)
        for level, skip in zip(self.decoder, reversed(skips)):
            x = self._run_level(level, x, skip, emb, context, text_mask)
        return self.out(x).to(x_t.dtype)

    def _run_level(self, level: nn.Module, *inputs: Tensor | None) -> Tensor:
        """level(*inputs), recomputed in backward instead of stored when checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            # keeps only the level's inputs; the RNG state is restored, so dropout masks repeat
            return self._gradient_checkpointing_func(level, *inputs)
        return level(*inputs)

    def _conditioning(
        self,
        t: Tensor,
        text_tokens: Tensor,
        text_pooled: Tensor,
        aug_level: Tensor | None,
        batch: int,
        image_embed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """SiLU(emb(t) + proj(pooled) [+ emb(aug_level)] [+ proj(z_i)]) [B, cond_dim] and the text
        context [B, L, cond_dim]."""
        weight_dtype = self.init_conv.weight.dtype
        text_tokens, text_pooled = text_tokens.to(weight_dtype), text_pooled.to(weight_dtype)  # fp16 caches
        emb = self.time_embed(t.expand(batch)) + self.pooled_proj(text_pooled)  # [B, cond_dim]
        if self.aug_embed is not None:
            emb = emb + self.aug_embed(aug_level.expand(batch))
        if image_embed is not None:
            emb = emb + self.image_emb_proj(image_embed.to(emb.dtype))
        emb = nn.functional.silu(emb)  # every res-block's FiLM starts with SiLU: do it once
        context = self.token_proj(text_tokens) if self.token_proj is not None else None  # [B, L, cond_dim]
        return emb, context

    def _append_image_tokens(
        self, text_tokens: Tensor, text_mask: Tensor, image_embed: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Caption tokens [B, L, D] + IMAGE_TOKENS projected z_i tokens -> [B, L + 4, D], mask too."""
        batch, dim = text_tokens.shape[0], self.config.text_dim
        weight = self.image_token_proj.weight
        tokens = self.image_token_proj(image_embed.to(weight.dtype)).view(batch, IMAGE_TOKENS, dim)
        visible = torch.ones(batch, IMAGE_TOKENS, dtype=torch.bool, device=text_mask.device)
        return torch.cat([text_tokens.to(tokens.dtype), tokens], 1), torch.cat([text_mask, visible], 1)

    def _check_image_embed(self, image_embed: Tensor | None, batch: int) -> None:
        """image_embed [B, image_embed_dim] is required by an unCLIP decoder and refused otherwise."""
        dim = self.config.image_embed_dim
        if not dim:
            if image_embed is not None:
                raise ValueError("image_embed must be None: this U-Net was built with image_embed_dim=0")
            return
        if image_embed is None or tuple(image_embed.shape) != (batch, dim):
            got = None if image_embed is None else tuple(image_embed.shape)
            raise ValueError(
                f"image_embed must be [B={batch}, image_embed_dim={dim}] (a CLIP image embedding, "
                f"zeros when dropped); got {got}"
            )

    def _input_image(self, x_t: Tensor, lowres: Tensor | None) -> Tensor:
        """x_t, or [x_t, bilinear_upsample(lowres)] along channels for super-resolution."""
        if lowres is None:
            return x_t
        if lowres.shape[-2:] != x_t.shape[-2:]:
            size = x_t.shape[-2:]
            lowres = nn.functional.interpolate(lowres, size=size, mode="bilinear", align_corners=False)
        return torch.cat([x_t, lowres.to(x_t.dtype)], dim=1)  # [B, 2 * in_channels, H, W]

    def _check_inputs(
        self,
        x_t: Tensor,
        t: Tensor,
        text_tokens: Tensor,
        text_mask: Tensor,
        text_pooled: Tensor,
        lowres: Tensor | None,
        aug_level: Tensor | None,
    ) -> None:
        """ValueError naming the argument and what is allowed; shapes only (no device sync)."""
        cfg = self.config
        factor = self.downsampling_factor
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
            raise ValueError(f"x_t must be [B, {cfg.in_channels}, H, W]; got shape {tuple(x_t.shape)}")
        batch, _, height, width = x_t.shape
        if height % factor or width % factor:
            raise ValueError(
                f"x_t height and width must be multiples of {factor} (2**(levels-1) for "
                f"{self.num_levels} levels); got {height}x{width}"
            )
        _check_per_example("t", t, batch)
        if text_tokens.ndim != 3 or text_tokens.shape[0] != batch or text_tokens.shape[2] != cfg.text_dim:
            raise ValueError(
                f"text_tokens must be [B={batch}, L, text_dim={cfg.text_dim}]; "
                f"got shape {tuple(text_tokens.shape)}"
            )
        if text_mask.dtype != torch.bool or tuple(text_mask.shape) != tuple(text_tokens.shape[:2]):
            raise ValueError(
                f"text_mask must be a bool tensor of shape {tuple(text_tokens.shape[:2])} "
                "(True = real token); "
                f"got {text_mask.dtype} of shape {tuple(text_mask.shape)}"
            )
        if tuple(text_pooled.shape) != (batch, cfg.text_dim):
            raise ValueError(
                f"text_pooled must be [B={batch}, text_dim={cfg.text_dim}]; "
                f"got shape {tuple(text_pooled.shape)}"
            )
        self._check_lowres(lowres, aug_level, batch)

    def _check_lowres(self, lowres: Tensor | None, aug_level: Tensor | None, batch: int) -> None:
        """lowres and aug_level are required with `lowres_cond` and refused without it."""
        if not self.config.lowres_cond:
            for name, value in (("lowres", lowres), ("aug_level", aug_level)):
                if value is not None:
                    raise ValueError(f"{name} must be None: this U-Net was built with lowres_cond=False")
            return
        in_channels = self.config.in_channels
        if lowres is None or lowres.ndim != 4 or lowres.shape[:2] != (batch, in_channels):
            got = None if lowres is None else tuple(lowres.shape)
            raise ValueError(f"lowres must be [B={batch}, {in_channels}, h, w] (lowres_cond=True); got {got}")
        if aug_level is None:
            raise ValueError("aug_level must be given ([B] levels in timestep units) when lowres_cond=True")
        _check_per_example("aug_level", aug_level, batch)


def _check_per_example(name: str, value: Tensor, batch: int) -> None:
    """A per-example scalar must be a tensor of shape [B] or a 0-d tensor."""
    if not isinstance(value, Tensor) or (value.ndim != 0 and tuple(value.shape) != (batch,)):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of shape [B={batch}] or a 0-d tensor; got {got}")
