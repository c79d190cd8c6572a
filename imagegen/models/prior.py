"""unCLIP's diffusion prior as a denoiser: diffusers' `PriorTransformer` behind the package's
denoiser interface `model(x_t, t, **cond)`.

Ramesh et al. 2022, §2.2: a decoder-only transformer with a causal attention mask over
[caption tokens, z_t, timestep embedding, noised z_i, a learnt query]; the query's output is the
prediction of the unnoised CLIP image embedding z_i. `PriorTransformer` is exactly that
sequence (its `prd_embedding` is the query). What is ours:

- the embedding is carried as an image of shape [B, E, 1, 1], so the package's schedules,
  losses (`DiffusionLoss`), guidance (`guided_denoiser`) and samplers run on it unchanged;
- caption tokens of any width are projected to E by `token_proj` (PriorTransformer's own
  projection expects E-wide tokens);
- an attention mask is always passed: PriorTransformer applies its causal mask only when one is
  given (without it, every position would see every other);
- embeddings are scaled, not z-scored (docs/unclip.md): unit vectors times sqrt(E), so each
  coordinate has unit variance on average and no dataset statistics need storing. The
  transformer's `clip_mean` / `clip_std` buffers are never used (`post_process_latents` is not called).
"""

from __future__ import annotations

import math

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn


def embedding_scale(dim: int) -> float:
    """sqrt(E): the factor between unit CLIP embeddings and what the prior diffuses."""
    return math.sqrt(dim)


class DiffusionPrior(ModelMixin, ConfigMixin):
    """Denoiser `prior(x_t [B, E, 1, 1], t [B], prior_tokens [B, L, W], prior_mask [B, L] bool,
    prior_text_embed [B, E]) -> [B, E, 1, 1]` (the target the diffusion config names; x0 in unCLIP).

    embed_dim E: the CLIP's joint width; text_width W: its text tower's token width; num_tokens L:
    caption tokens (text.max_length). x_t and prior_text_embed are in the scaled space
    (unit vector * sqrt(E)).
    """

    @register_to_config
    def __init__(
        self,
        embed_dim: int = 128,
        text_width: int = 128,
        num_tokens: int = 32,
        layers: int = 4,
        heads: int = 4,
        head_dim: int = 32,
        dropout: float = 0.0,
        prediction_type: str | None = "x0",
    ) -> None:
        super().__init__()
        from diffusers import PriorTransformer

        self.token_proj = nn.Sequential(nn.LayerNorm(text_width), nn.Linear(text_width, embed_dim))
        self.transformer = PriorTransformer(
            num_attention_heads=heads,
            attention_head_dim=head_dim,
            num_layers=layers,
            embedding_dim=embed_dim,
            num_embeddings=num_tokens,
            additional_embeddings=4,  # z_t, timestep, noised z_i, the learnt query
            dropout=dropout,
            norm_in_type="layer",
        )

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        prior_tokens: Tensor,
        prior_mask: Tensor,
        prior_text_embed: Tensor,
    ) -> Tensor:
        cfg = self.config
        batch = x_t.shape[0]
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != (cfg.embed_dim, 1, 1):
            raise ValueError(f"x_t must be [B, {cfg.embed_dim}, 1, 1] (an embedding); got {tuple(x_t.shape)}")
        if prior_tokens.shape[1] != cfg.num_tokens or prior_tokens.shape[2] != cfg.text_width:
            raise ValueError(
                f"prior_tokens must be [B, {cfg.num_tokens}, {cfg.text_width}] (the CLIP's caption "
                f"tokens at text.max_length); got {tuple(prior_tokens.shape)}"
            )
        if tuple(prior_text_embed.shape) != (batch, cfg.embed_dim):
            raise ValueError(
                f"prior_text_embed must be [B={batch}, {cfg.embed_dim}]; got {tuple(prior_text_embed.shape)}"
            )
        dtype = self.token_proj[1].weight.dtype
        tokens = self.token_proj(prior_tokens.to(dtype))  # [B, L, E]
        out = self.transformer(
            hidden_states=x_t.flatten(1).to(dtype),  # [B, E]
            timestep=t.expand(batch) if t.ndim == 0 else t,
            proj_embedding=prior_text_embed.to(dtype),
            encoder_hidden_states=tokens,
            attention_mask=prior_mask.bool(),  # always: the causal mask applies only with one
        ).predicted_image_embedding  # [B, E]
        return out[:, :, None, None].to(x_t.dtype)
