"""imagegen.clip: a small CLIP (Radford et al. 2021) trained on the package's own data.

    model = build_clip(cfg.clip, tokenizer)                 # transformers.CLIPModel, tiny config
    tokens = CaptionTokenizer(tokenizer, max_length=32)(["a red circle"])   # TokenBatch
    logits = scaled_logits(image_emb, text_emb, model.logit_scale)           # [B, B]
    loss = contrastive_loss(logits, caption_groups(captions))               # same-caption pairs masked

The networks are transformers' (`CLIPModel` from a `CLIPConfig`); what is ours is the config,
the tokenizer wiring (any transformers tokenizer, its end-of-text token pooled), the loss with
duplicate captions masked out of the denominators, the temperature clamp and retrieval metrics.
See docs/unclip.md.
"""

from imagegen.clip.frozen import FrozenClip
from imagegen.clip.loss import (
    MAX_LOGIT_SCALE,
    caption_groups,
    clamp_logit_scale,
    contrastive_loss,
    scaled_logits,
)
from imagegen.clip.model import build_clip, embed_images, embed_texts, load_clip, project_text
from imagegen.clip.retrieval import recall_at_1, zero_shot_predictions
from imagegen.clip.tokens import CaptionTokenizer, TokenBatch, load_tokenizer

__all__ = [
    "MAX_LOGIT_SCALE",
    "CaptionTokenizer",
    "FrozenClip",
    "TokenBatch",
    "build_clip",
    "caption_groups",
    "clamp_logit_scale",
    "contrastive_loss",
    "embed_images",
    "embed_texts",
    "load_clip",
    "load_tokenizer",
    "project_text",
    "recall_at_1",
    "scaled_logits",
    "zero_shot_predictions",
]
