"""CLIP's symmetric contrastive loss (Radford et al. 2021, Fig. 3), with duplicate captions masked.

    logits[i, j] = exp(min(logit_scale, ln 100)) * <z_img_i, z_txt_j>      (unit vectors)
    L = (CE(logits, diag) over rows + CE(logits^T, diag) over rows) / 2

The Shapes grammar repeats captions ("a red circle" is drawn many times), so a batch often holds
two images of one caption. Standard CLIP would count the other image's identical caption as a
negative and could never reach zero loss: the two texts embed identically, so image i's softmax
splits between them. We **mask** every off-diagonal pair (i, j) with caption_i == caption_j out of
both softmax denominators (logit -> -inf): each pair is contrasted with true negatives only, the
loss is exactly CLIP's when a batch has no duplicates, and its minimum stays 0. (A multi-positive
target, uniform over same-caption columns, would instead have a floor of ln k for k duplicates
and pull all k images together; masking neither pushes nor pulls them.)

The temperature is learnt as logit_scale = ln(1 / tau) and clamped to [0, ln 100] as open_clip
does: in the forward (so no logit is ever scaled beyond 100) and in place after each optimizer
step (`clamp_logit_scale`, so Adam's momentum cannot carry the stored value past the bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_LOGIT_SCALE = math.log(100.0)  # open_clip's clamp: 1 / tau <= 100


def caption_groups(captions: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """long [B]: equal ids exactly for equal captions (ids in first-seen order)."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(c, len(ids)) for c in captions], dtype=torch.long, device=device)


def scaled_logits(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """float32 [B_img, B_txt]: exp(clamp(logit_scale, 0, ln 100)) * cosine(image_i, text_j).

    image_emb [B_img, E] and text_emb [B_txt, E] need not be normalised; computed in fp32 (the
    towers may run under bf16 autocast; a scale of 100 would amplify bf16 rounding of the cosines).
    """
    image = F.normalize(image_emb.float(), dim=-1)  # [B_img, E]
    text = F.normalize(text_emb.float(), dim=-1)  # [B_txt, E]
    scale = logit_scale.float().clamp(0.0, MAX_LOGIT_SCALE).exp()
    return scale * image @ text.T  # [B_img, B_txt]


def contrastive_loss(logits: Tensor, groups: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE over square logits [B, B] (rows images, columns texts; pair i on the
    diagonal). With `groups` (long [B], `caption_groups`), off-diagonal same-caption entries are
    masked out of both directions' denominators; None = standard CLIP. Returns a scalar."""
    batch = logits.shape[0]
    if logits.shape != (batch, batch):
        raise ValueError(f"logits: expected a square [B, B] matrix, got {tuple(logits.shape)}")
    target = torch.arange(batch, device=logits.device)
    if groups is not None:
        same = groups[:, None] == groups[None, :]  # [B, B], symmetric
        duplicate = same & ~torch.eye(batch, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(duplicate, float("-inf"))  # the diagonal is never masked
    image_to_text = F.cross_entropy(logits, target)
    text_to_image = F.cross_entropy(logits.T, target)
    return (image_to_text + text_to_image) / 2


@torch.no_grad()
def clamp_logit_scale(model: nn.Module) -> None:
    """In place: model.logit_scale into [0, ln 100] (open_clip clamps after every step)."""
    model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
