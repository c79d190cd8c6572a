"""The CLIP probes score what they claim: an oracle "CLIP" that reads colour and shape off the
pixels (the Shapes scorer) and off the words scores ~100%; a colour-blind one keeps the shape
score and loses the colour score; retrieval uses distinct captions and states chance."""

from __future__ import annotations

import torch
from torch import nn

from imagegen.clip import CaptionTokenizer, load_tokenizer
from imagegen.data.prompts import COLORS, SHAPES
from imagegen.evaluation.clip_probe import distinct_caption_retrieval, single_object_zero_shot
from imagegen.evaluation.scorer import detect

COLOR_NAMES, CLASSES = list(COLORS), len(COLORS) * len(SHAPES)


def _one_hot(color: str | None, shape: str | None) -> torch.Tensor:
    vector = torch.zeros(CLASSES)
    if shape in SHAPES:
        base = COLOR_NAMES.index(color) * len(SHAPES) if color in COLORS else 0
        vector[base + SHAPES.index(shape)] = 1.0
    return vector


class OracleClip(nn.Module):
    """Image -> one-hot (colour, shape) of the dominant detected object; text -> of its words."""

    def __init__(self, tokenizer, color_blind: bool = False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # the probes read the device from a parameter
        self.tokenizer, self.color_blind = tokenizer, color_blind

    def get_image_features(self, pixel_values):
        rows = []
        for image in pixel_values:
            found = detect(image)[1]
            color, shape = (found[0].color, found[0].shape) if found else (None, None)
            rows.append(_one_hot(None if self.color_blind else color, shape))
        return torch.stack(rows) + 1e-3  # no all-zero rows to normalise

    def get_text_features(self, input_ids, attention_mask):
        rows = []
        for ids in input_ids:
            words = self.tokenizer.decode(ids, skip_special_tokens=True).split()
            color = next((w for w in words if w in COLORS), None)
            shape = next((w for w in words if w in SHAPES), None)  # single-object prompts: singular
            rows.append(_one_hot(None if self.color_blind else color, shape))
        return torch.stack(rows) + 1e-3


def test_the_oracle_scores_near_100_percent_and_a_color_blind_one_loses_only_color():
    tokens = CaptionTokenizer(load_tokenizer(), max_length=32)
    oracle = single_object_zero_shot(OracleClip(tokens.tokenizer), tokens, resolution=32, count=96)
    assert oracle["images"] == 96 and oracle["prompts"] == 48
    assert oracle["color_accuracy"] >= 0.95 and oracle["shape_accuracy"] >= 0.95
    blind = single_object_zero_shot(OracleClip(tokens.tokenizer, True), tokens, resolution=32, count=96)
    assert blind["shape_accuracy"] >= 0.95 and blind["color_accuracy"] < 0.4


def test_retrieval_takes_distinct_captions_and_states_chance():
    tokens = CaptionTokenizer(load_tokenizer(), max_length=32)
    result = distinct_caption_retrieval(OracleClip(tokens.tokenizer), tokens, resolution=32, count=20)
    assert result["pairs"] == 20 and result["chance"] == 1 / 20
