"""Retrieval and zero-shot classification by cosine in CLIP space (Radford et al. 2021, §3.1).

Labels say which image and which text belong together: a text retrieves correctly when its
nearest image carries its label, so two images of one caption are both right answers.
"""

from __future__ import annotations

import torch
from torch import Tensor


def recall_at_1(
    image_emb: Tensor, text_emb: Tensor, image_labels: Tensor, text_labels: Tensor
) -> tuple[float, float]:
    """(image->text R@1, text->image R@1) for image_emb [N, E] and text_emb [M, E] (unit vectors),
    labels long [N] and [M]: the share of queries whose top-cosine item has the query's label."""
    similarity = image_emb.float() @ text_emb.float().T  # [N, M]
    image_to_text = (text_labels[similarity.argmax(dim=1)] == image_labels).float().mean()
    text_to_image = (image_labels[similarity.argmax(dim=0)] == text_labels).float().mean()
    return float(image_to_text), float(text_to_image)


def zero_shot_predictions(image_emb: Tensor, class_emb: Tensor) -> Tensor:
    """long [N]: for each image [N, E], the index of the nearest class text [K, E] by cosine."""
    return torch.argmax(image_emb.float() @ class_emb.float().T, dim=1)
