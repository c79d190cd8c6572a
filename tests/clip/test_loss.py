"""The contrastive loss: CLIP's when captions differ, duplicates never negatives, the clamp."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imagegen.clip import MAX_LOGIT_SCALE, caption_groups, clamp_logit_scale, contrastive_loss, scaled_logits


def test_caption_groups_give_equal_ids_exactly_to_equal_captions():
    groups = caption_groups(["a red circle", "a blue square", "a red circle", "a red circle "])
    assert groups.tolist() == [0, 1, 0, 2]


def test_with_distinct_captions_the_loss_is_clips():
    """CLIP's loss written out: mean over pairs of -log softmax on the diagonal, both ways."""
    logits = torch.randn(6, 6) * 3  # rows images, columns texts
    diagonal = torch.arange(6)
    by_rows = -logits.log_softmax(dim=1)[diagonal, diagonal].mean()
    by_columns = -logits.log_softmax(dim=0)[diagonal, diagonal].mean()
    expected = (by_rows + by_columns) / 2
    distinct = caption_groups([f"caption {i}" for i in range(6)])
    torch.testing.assert_close(contrastive_loss(logits, distinct), expected)
    torch.testing.assert_close(contrastive_loss(logits, None), expected)


def test_a_duplicate_captions_similarity_does_not_change_the_loss():
    """Pairs 0 and 1 share a caption: raising image 0's similarity to text 1 (and image 1's to
    text 0) would raise the loss if they were negatives; masked, the loss and its gradient there
    are exactly unchanged. Pair 2's caption differs, so the same change there does raise it."""
    groups = caption_groups(["a red circle", "a red circle", "a blue square"])
    base = torch.randn(3, 3)
    raised = base.clone()
    raised[0, 1] += 5.0
    raised[1, 0] += 5.0
    assert contrastive_loss(raised, groups) == contrastive_loss(base, groups)
    assert contrastive_loss(raised, None) > contrastive_loss(base, None) + 0.5  # standard CLIP: negatives
    other = base.clone()
    other[0, 2] += 5.0
    assert contrastive_loss(other, groups) > contrastive_loss(base, groups) + 0.5
    logits = base.clone().requires_grad_(True)
    contrastive_loss(logits, groups).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0 and logits.grad[0, 2] != 0


def test_a_perfect_embedding_reaches_zero_loss_despite_duplicates():
    """Each image embeds exactly as its caption: with masking the loss goes to 0; counting the
    duplicate as a negative leaves image 0 split between two identical texts (loss >= ln 2 / 2)."""
    captions = ["a red circle", "a red circle", "a blue square", "a green star"]
    groups = caption_groups(captions)
    text = torch.eye(4)[groups]  # [4, 4]: one direction per distinct caption
    logits = scaled_logits(text.clone(), text, torch.tensor(MAX_LOGIT_SCALE))
    assert contrastive_loss(logits, groups) < 1e-3
    assert contrastive_loss(logits, None) > math.log(2) / 2 - 1e-3


def test_logits_are_scaled_by_at_most_100():
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    cosine = scaled_logits(image, text, torch.tensor(0.0))  # scale exp(0) = 1
    assert cosine.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(scaled_logits(image, text, torch.tensor(12.0)), 100 * cosine)
    torch.testing.assert_close(scaled_logits(image, text, torch.tensor(math.log(20.0))), 20 * cosine)


@pytest.mark.parametrize(("stored", "clamped"), [(9.0, MAX_LOGIT_SCALE), (-1.0, 0.0), (2.0, 2.0)])
def test_clamp_logit_scale_keeps_the_parameter_in_0_to_ln_100(stored, clamped):
    module = nn.Module()
    module.logit_scale = nn.Parameter(torch.tensor(stored))
    clamp_logit_scale(module)
    assert module.logit_scale.item() == pytest.approx(clamped)
    assert module.logit_scale.requires_grad


def test_the_loss_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match=r"logits: expected a square"):
        contrastive_loss(torch.randn(3, 4))
