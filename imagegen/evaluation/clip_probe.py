"""Zero-shot probes of a CLIP on the Shapes grammar (Radford et al. 2021, §3.1): no training.

- `single_object_zero_shot`: rendered single-object scenes (a held-out data seed, any phrasing,
  size and background) classified among the 48 prompts "a red circle" ... "a pink cross" of
  `single_object_prompts` by cosine; the predicted prompt's colour and shape are scored
  separately (chance 1/8 and 1/6; the exact pair 1/48).
- `distinct_caption_retrieval`: `count` scenes of every kind with pairwise distinct captions;
  image->text and text->image R@1 among them (chance 1 / count).

Works on any CLIPModel with its tokenizer: the one `train.objective: clip` saves (ema/clip).
"""

from __future__ import annotations

from typing import Any

import torch

from imagegen.clip import CaptionTokenizer, embed_images, embed_texts, recall_at_1, zero_shot_predictions
from imagegen.data.shapes import ShapesDataset
from imagegen.evaluation.single_objects import single_object_prompts

EVAL_SEED = 1_000_003  # a data seed no config trains on


@torch.no_grad()
def _embed(model: Any, tokens: CaptionTokenizer, images: torch.Tensor, texts: list[str], batch: int = 256):
    """(unit image embeddings [N, E], unit text embeddings [M, E]), in chunks of `batch`."""
    device = next(model.parameters()).device
    image_emb = torch.cat(
        [embed_images(model, images[i : i + batch].to(device)) for i in range(0, len(images), batch)]
    )
    text_emb = torch.cat(
        [embed_texts(model, tokens(texts[i : i + batch]).to(device)) for i in range(0, len(texts), batch)]
    )
    return image_emb, text_emb


def single_object_zero_shot(
    model: Any, tokens: CaptionTokenizer, resolution: int, count: int = 480, seed: int = EVAL_SEED
) -> dict[str, Any]:
    """Colour / shape / exact accuracy of zero-shot classification of `count` single-object renders."""
    dataset = ShapesDataset(resolution, seed=seed, length=count, scene_kinds=["single"], scene_weights=[1.0])
    items = [dataset[i] for i in range(count)]
    prompts = single_object_prompts()
    image_emb, text_emb = _embed(
        model, tokens, torch.stack([it["image"] for it in items]), [p for p, _ in prompts]
    )
    predicted = zero_shot_predictions(image_emb, text_emb).tolist()  # [N] prompt indices
    right_color = right_shape = right_both = 0
    for item, index in zip(items, predicted):
        wanted, guessed = item["spec"]["objects"][0], prompts[index][1]["objects"][0]
        right_color += wanted["color"] == guessed["color"]
        right_shape += wanted["shape"] == guessed["shape"]
        right_both += (wanted["color"], wanted["shape"]) == (guessed["color"], guessed["shape"])
    return {
        "images": count,
        "prompts": len(prompts),
        "color_accuracy": right_color / count,
        "shape_accuracy": right_shape / count,
        "exact_accuracy": right_both / count,
    }


def distinct_caption_retrieval(
    model: Any, tokens: CaptionTokenizer, resolution: int, count: int = 100, seed: int = EVAL_SEED + 1
) -> dict[str, Any]:
    """R@1 both ways over `count` scenes (every kind, default weights) with distinct captions."""
    dataset = ShapesDataset(resolution, seed=seed, length=100 * count)
    chosen: dict[str, int] = {}
    for index in range(len(dataset)):
        chosen.setdefault(dataset.caption(index), index)
        if len(chosen) == count:
            break
    captions = list(chosen)
    images = torch.stack([dataset[chosen[caption]]["image"] for caption in captions])
    image_emb, text_emb = _embed(model, tokens, images, captions)
    labels = torch.arange(len(captions))
    image_to_text, text_to_image = recall_at_1(image_emb, text_emb, labels, labels)
    return {"pairs": len(captions), "chance": 1 / len(captions), "image_to_text_r1": image_to_text,
            "text_to_image_r1": text_to_image}  # fmt: skip
