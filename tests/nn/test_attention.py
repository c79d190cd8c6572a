"""Self- and cross-attention on feature maps: masking, the null token, equivariance, zero init."""

from __future__ import annotations

import pytest
import torch

from imagegen.nn import CrossAttention, SelfAttention


def _randomize_(module: torch.nn.Module) -> None:
    """Undo the zero init of the output projection so the layer is not the identity."""
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * 0.1)


def test_fresh_layers_are_identity():
    x = torch.randn(2, 64, 4, 4)
    context, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(SelfAttention(64, head_dim=32)(x), x)
    torch.testing.assert_close(CrossAttention(64, 16, head_dim=32)(x, context, mask), x)


def test_self_attention_is_equivariant_to_pixel_permutation():
    layer = SelfAttention(64, head_dim=16)
    _randomize_(layer)
    x = torch.randn(2, 64, 4, 4)
    out = layer(x)
    assert not torch.allclose(out, x)
    # no positional information: transposing the image transposes the output
    torch.testing.assert_close(layer(x.transpose(2, 3)), out.transpose(2, 3), atol=1e-5, rtol=1e-5)


def test_cross_attention_ignores_masked_context():
    layer = CrossAttention(32, 8, head_dim=16)
    _randomize_(layer)
    x = torch.randn(2, 32, 4, 4)
    context = torch.randn(2, 3, 8)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    garbage = torch.cat([context, 100 * torch.randn(2, 4, 8)], dim=1)  # [2, 7, 8]
    longer_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    garbage[~longer_mask] = 1e4 * torch.randn_like(garbage[~longer_mask])
    out = layer(x, context, mask)
    torch.testing.assert_close(layer(x, garbage, longer_mask), out, atol=1e-5, rtol=1e-5)
    # the unmasked context does matter
    assert not torch.allclose(layer(x, torch.randn(2, 3, 8), mask), out)


def test_all_false_mask_attends_only_to_the_null_token():
    layer = CrossAttention(32, 8, head_dim=16)
    _randomize_(layer)
    x = torch.randn(2, 32, 4, 4)
    none = torch.zeros(2, 3, dtype=torch.bool)
    out = layer(x, torch.randn(2, 3, 8), none)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(layer(x, torch.randn(2, 3, 8), none), out)
    assert not torch.allclose(out, x)  # the learned null value is attended to


def test_head_dim_must_divide_channels():
    with pytest.raises(ValueError, match="head_dim"):
        SelfAttention(48, head_dim=32)
