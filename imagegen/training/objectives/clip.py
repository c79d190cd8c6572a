"""The CLIP objective for the shared trainer: one phase, the symmetric contrastive loss.

Owns `ClipObjective`, the glue between `imagegen.clip` and the training loop (Radford et al.
2021, Fig. 3): per micro-batch, the batch's images [B, 3, H, W] in [-1, 1] and its captions'
token ids (the trainer's "text", from `CaptionTokenizer` instead of an embedding cache) go through
both towers; the loss masks same-caption pairs out of the softmax denominators
(`clip.duplicates: mask`, see `imagegen.clip.loss`). After every optimizer step the learnt
logit_scale is clamped to [0, ln 100] in place, as open_clip does. The trainer does the rest:
checkpoints, exact resume, EMA (the saved CLIP is the EMA copy, `ema/clip/`), logging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from imagegen.clip import caption_groups, clamp_logit_scale, contrastive_loss, scaled_logits
from imagegen.clip.tokens import CaptionTokenizer, TokenBatch
from imagegen.config import RunConfig
from imagegen.training.objectives.base import PhaseSpec

CLIP_BETAS = (0.9, 0.98)  # CLIP's Adam betas (Radford et al. 2021, Table 20)


class ClipObjective:
    """Contrastive image-text training of one CLIPModel: phase "clip", network and EMA "clip"."""

    phases = ("clip",)

    def __init__(self, cfg: RunConfig, model: nn.Module, tokens: CaptionTokenizer):
        self.cfg = cfg
        self.networks = {"clip": model}
        self.ema_networks = {"clip": cfg.train.ema_max_decay}
        self.tokens = tokens

    def phase_spec(self, phase: str) -> PhaseSpec:
        if phase != "clip":
            raise ValueError(f"unknown phase {phase!r}; valid phases: {self.phases}")
        train = self.cfg.train
        return PhaseSpec("clip", train.lr, CLIP_BETAS, train.weight_decay)

    def loss(
        self,
        phase: str,
        batch: dict[str, Any],
        text: TokenBatch,
        null_text: TokenBatch,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Contrastive loss of one micro-batch; logs `loss`, `logit_scale` and the in-batch
        image->text top-1 accuracy `batch_acc` (a duplicate caption's text counts as right)."""
        model = self.networks["clip"]
        output = model(
            input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=batch["image"]
        )  # the wrapped forward: DDP sees every parameter used
        logit_scale = extract_model_from_parallel(model).logit_scale
        logits = scaled_logits(output.image_embeds, output.text_embeds, logit_scale)  # [B, B] fp32
        groups = caption_groups(batch["caption"], device=logits.device)  # [B]
        masked = groups if self.cfg.clip.duplicates == "mask" else None
        loss = contrastive_loss(logits, masked)
        right = groups[logits.argmax(dim=1)] == groups
        return loss, {"loss": loss, "logit_scale": logit_scale.detach(), "batch_acc": right.float().mean()}

    def after_step(self, phase: str) -> None:
        """open_clip's clamp, in place after the optimizer step: logit_scale in [0, ln 100]."""
        clamp_logit_scale(extract_model_from_parallel(self.networks["clip"]))

    def save_extras(self, name: str, folder: Path) -> None:
        """The tokenizer beside the saved weights, so the folder is a `text.encoder: clip` model."""
        self.tokens.tokenizer.save_pretrained(str(folder))

    def sample(self, averaged, text, null_text, generator) -> torch.Tensor:
        raise ValueError("train.objective clip draws no images: set train.sample_every=0")
