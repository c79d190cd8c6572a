"""unCLIP's prior and decoder as training objectives (Ramesh et al. 2022, §2.1-2.2).

Both hold the run's trained CLIP frozen (`unclip.clip`, never saved or trained here); its image
tower turns each training image into its z_i on the fly (a few ms per batch at 32 px). Both write
`clip.json` (the CLIP's folder and weights fingerprint) beside their saved weights, so an unCLIP
folder is only assembled from a prior and a decoder of one CLIP.

The prior reads captions through the CLIP: its text cache is the CLIP text tower's
(`text.encoder: clip`, same folder), whose pooled states the CLIP's text projection turns into
z_t. The decoder has a text encoder of its own (the bundled MiniLM by default), as unCLIP's
decoder has GLIDE's: it is the decoder's caption path, z_i its image path.

`PriorObjective`: phase `prior`, network `prior` (`imagegen.models.prior.DiffusionPrior`). The
diffusion runs on z_i * sqrt(E) as a [B, E, 1, 1] "image" with the package's `DiffusionLoss`
(diffusion.prediction x0 and loss_weighting none give unCLIP's MSE on the unnoised z_i);
conditioning dropout (diffusion.cond_drop_prob, unCLIP: 10%) replaces the caption's tokens and
z_t by the null caption's; the noised z_i is never dropped (DALLE2-pytorch #285).

`DecoderObjective`: the Efficient U-Net with `model.image_embed_dim` = E, conditioned on the
caption (cross-attention, pooled) and z_i (4 extra tokens + the timestep embedding). z_i is
replaced by zeros with unclip.image_embed_drop_prob (10%) and, independently, the caption by the
null caption with diffusion.cond_drop_prob (unCLIP: 50%); sampling guides against both dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imagegen.clip import FrozenClip
from imagegen.config import RunConfig
from imagegen.diffusion.common import rand
from imagegen.diffusion.embeddings import prior_condition, sample_decoder, sample_image_embeds
from imagegen.training.objectives.base import PhaseSpec
from imagegen.training.objectives.diffusion import DiffusionObjective


def check_text_width(clip: FrozenClip, text_dim: int, objective: str) -> None:
    if text_dim != clip.text_width:
        raise ValueError(
            f"the text cache holds {text_dim}-d tokens but the CLIP's text tower is {clip.text_width} "
            f"wide: a {objective} reads captions through its own CLIP (text.encoder clip, "
            "text.name_or_path = unclip.clip)"
        )


CLIP_FILE = "clip.json"


def write_clip_record(clip: FrozenClip, folder: Path) -> None:
    """clip.json beside saved weights: which CLIP (folder, weights fingerprint) they belong to."""
    from imagegen.text.encoders import weights_fingerprint

    record = {"folder": str(clip.folder.resolve()), "fingerprint": weights_fingerprint(clip.folder)}
    (folder / CLIP_FILE).write_text(json.dumps(record, indent=2) + "\n")


class PriorObjective:
    """unCLIP's diffusion prior: caption tokens + z_t -> z_i, one phase and network `prior`."""

    phases = ("prior",)

    def __init__(self, cfg: RunConfig, prior: nn.Module, diffusion: Any, loss_fn: Any, clip: FrozenClip):
        self.cfg, self.diffusion, self.loss_fn, self.clip = cfg, diffusion, loss_fn, clip
        self.networks = {"prior": prior}
        self.ema_networks = {"prior": cfg.train.ema_max_decay}

    def phase_spec(self, phase: str) -> PhaseSpec:
        if phase != "prior":
            raise ValueError(f"unknown phase {phase!r}; valid phases: {self.phases}")
        train = self.cfg.train
        return PhaseSpec("prior", train.lr, (0.9, 0.99), train.weight_decay)

    def condition(self, text: Any) -> dict[str, torch.Tensor]:
        """The prior's keyword arguments for a TextEncoding (the CLIP text tower's)."""
        return prior_condition(text.tokens, text.mask, self.clip.text_embeds(text.pooled))

    def loss(self, phase, batch, text, null_text, generator):
        z_i = self.clip.image_embeds(batch["image"])  # [B, E] unit
        x0 = (z_i * self.clip.embed_dim**0.5)[:, :, None, None]  # [B, E, 1, 1]
        per_sample = self.loss_fn(
            self.networks["prior"],
            x0,
            self.condition(text),
            null_cond=self.condition(null_text),  # caption keys only: x_t is never dropped
            cond_drop_prob=self.cfg.diffusion.cond_drop_prob,
            generator=generator,
        )
        loss = per_sample.mean()
        return loss, {"loss": loss}

    @torch.no_grad()
    def sample_embeds(self, prior: nn.Module, text: Any, null_text: Any, generator) -> torch.Tensor:
        """Unit z_i [B, E] sampled for a TextEncoding (the run's sample settings)."""
        return sample_image_embeds(
            prior,
            self.diffusion,
            self.cfg.sample,
            self.condition(text),
            self.condition(null_text),
            self.clip.text_embeds(text.pooled),
            generator,
            num_candidates=self.cfg.prior.num_candidates,
        )

    def save_extras(self, name: str, folder: Path) -> None:
        write_clip_record(self.clip, folder)

    def sample(self, averaged, text, null_text, generator) -> torch.Tensor:
        raise ValueError("train.objective prior draws no images: set train.sample_every=0")


def drop_rows(values: torch.Tensor, null: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """values [B, ...] with the rows where drop [B] is True replaced by null (broadcast to a row)."""
    rows = drop.view(-1, *([1] * (values.ndim - 1)))
    return torch.where(rows, null.to(values.dtype).expand_as(values), values)


class DecoderObjective(DiffusionObjective):
    """unCLIP's decoder: the Efficient U-Net denoising the image given the caption and its z_i."""

    def __init__(self, cfg: RunConfig, unet: nn.Module, diffusion: Any, loss_fn: Any, clip: FrozenClip):
        super().__init__(cfg, unet, diffusion, loss_fn)
        self.clip = clip
        if cfg.model.image_embed_dim != clip.embed_dim:
            raise ValueError(
                f"model.image_embed_dim is {cfg.model.image_embed_dim} but the CLIP in unclip.clip "
                f"embeds in {clip.embed_dim} dimensions: set model.image_embed_dim={clip.embed_dim}"
            )

    def loss(self, phase, batch, text, null_text, generator):
        x0 = batch["image"]
        batch_size, device = x0.shape[0], x0.device
        z_i = self.clip.image_embeds(x0)  # [B, E]
        drop_image = rand([batch_size], generator, device) < self.cfg.unclip.image_embed_drop_prob
        drop_text = rand([batch_size], generator, device) < self.cfg.diffusion.cond_drop_prob
        z_i = drop_rows(z_i, torch.zeros(1, z_i.shape[1], device=device), drop_image)
        cond = {
            "text_tokens": drop_rows(text.tokens, null_text.tokens, drop_text),
            "text_mask": drop_rows(text.mask, null_text.mask, drop_text),
            "text_pooled": drop_rows(text.pooled, null_text.pooled, drop_text),
            "image_embed": z_i,
        }
        per_sample = self.loss_fn(self.networks["model"], x0, cond, null_cond=None, generator=generator)
        loss = per_sample.mean()
        return loss, {"loss": loss}

    def save_extras(self, name: str, folder: Path) -> None:
        write_clip_record(self.clip, folder)

    @torch.no_grad()
    def sample(self, averaged, text, null_text, generator, image_embeds: torch.Tensor | None = None):
        """Images [B, 3, H, W] for captions `text` and unit z_i [B, E] (default: the CLIP's z_t of
        the trainer's sample prompts used as z_i, so the preview needs no prior); guidance against
        the null caption and a zero z_i."""
        if image_embeds is None:
            prompts = list(self.cfg.train.sample_prompts)[: len(text)]
            image_embeds = self.clip.caption_embeds(prompts, text.tokens.device)
        model = self.cfg.model
        return sample_decoder(
            averaged["model"], self.diffusion, self.cfg.sample, text, null_text, image_embeds,
            model.image_size, generator, channels=model.out_channels,
        )  # fmt: skip
