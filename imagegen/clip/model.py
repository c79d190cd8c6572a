"""The CLIP network: `transformers.CLIPModel` built from a tiny `CLIPConfig`, saved and loaded.

A ViT image tower (patches of `clip.patch_size` pixels, a CLS token, pre-LN transformer) and a
causal text transformer pooled at the first end-of-text token, each projected (no bias) to
`clip.embed_dim` — CLIP as Radford et al. 2021 describe it, at Shapes size. Images go in as the
package keeps them, float [-1, 1] NCHW: the CLIP is trained on that range, so no image processor
(mean/std normalisation) is involved. A saved CLIP is a folder: config.json + model.safetensors
(`save_pretrained`) and the tokenizer's files, which is also what `text.encoder: clip` loads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from imagegen.clip.tokens import CaptionTokenizer, TokenBatch
from imagegen.config import ClipConfig


def clip_config(cfg: ClipConfig, tokens: CaptionTokenizer) -> Any:
    """The transformers `CLIPConfig` of `cfg`, with the tokenizer's vocabulary and special ids."""
    from transformers import CLIPConfig

    tokenizer = tokens.tokenizer
    text = {
        "vocab_size": tokens.vocab_size,
        "hidden_size": cfg.text_width,
        "intermediate_size": 4 * cfg.text_width,
        "num_hidden_layers": cfg.text_layers,
        "num_attention_heads": cfg.text_heads,
        "max_position_embeddings": cfg.max_length,
        "eos_token_id": tokens.eos_token_id,  # pooling takes the first position holding this id
        "bos_token_id": int(tokenizer.cls_token_id or tokenizer.bos_token_id or 0),
        "pad_token_id": tokens.pad_token_id,
    }
    vision = {
        "hidden_size": cfg.vision_width,
        "intermediate_size": 4 * cfg.vision_width,
        "num_hidden_layers": cfg.vision_layers,
        "num_attention_heads": cfg.vision_heads,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": 3,
    }
    return CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=cfg.embed_dim,
        logit_scale_init_value=math.log(1.0 / cfg.init_temperature),
    )


def build_clip(cfg: ClipConfig, tokens: CaptionTokenizer) -> torch.nn.Module:
    """A freshly initialised CLIPModel (transformers' CLIP initialisation; seed the RNG first)."""
    from transformers import CLIPModel

    return CLIPModel(clip_config(cfg, tokens))


def load_clip(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """(CLIPModel in eval mode, tokenizer) from a saved CLIP folder, safetensors only.

    FileNotFoundError / ValueError name the folder and what is missing or wrong.
    """
    from transformers import AutoTokenizer, CLIPModel

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CLIP folder {str(folder)!r} does not exist")
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"CLIP folder {str(folder)!r} has no {name}")
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != "clip":
        raise ValueError(f"{folder / 'config.json'}: model_type is {model_type!r}, not a CLIP ('clip')")
    model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model.to(device).eval(), tokenizer


def embed_images(model: torch.nn.Module, images: Tensor) -> Tensor:
    """Unit image embeddings float32 [B, E] of images [B, 3, H, W] in [-1, 1]."""
    features = model.get_image_features(pixel_values=images)
    features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object
    return F.normalize(features.float(), dim=-1)


def embed_texts(model: torch.nn.Module, tokens: TokenBatch) -> Tensor:
    """Unit text embeddings float32 [B, E] of a TokenBatch (ids on the model's device)."""
    features = model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
    features = getattr(features, "pooler_output", features)
    return F.normalize(features.float(), dim=-1)
