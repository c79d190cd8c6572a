"""ResNet block with FiLM conditioning, and the down/up sampling layers."""

from __future__ import annotations

import torch

from imagegen.nn import Downsample, ResnetBlock, Upsample


def test_fresh_block_is_identity_or_projection():
    x, emb = torch.randn(2, 32, 8, 8), torch.randn(2, 16)
    block = ResnetBlock(32, 32, emb_dim=16)
    torch.testing.assert_close(block(x, emb), x)  # zero-initialised last conv
    widen = ResnetBlock(32, 64, emb_dim=16)
    torch.testing.assert_close(widen(x, emb), widen.skip(x))


def test_film_embedding_changes_the_output_per_example():
    block = ResnetBlock(32, 48, emb_dim=16)
    torch.nn.init.normal_(block.conv2.weight, std=0.05)
    x = torch.randn(1, 32, 8, 8).expand(2, -1, -1, -1)
    emb = torch.randn(2, 16)
    out = block(x, emb)
    assert out.shape == (2, 48, 8, 8)
    assert not torch.allclose(out[0], out[1])  # same image, different embedding
    same = block(x, emb[:1].expand(2, -1))
    torch.testing.assert_close(same[0], same[1])


def test_resampling_shapes_and_nearest_upsampling():
    x = torch.randn(2, 16, 8, 8)
    assert Downsample(16, 32)(x).shape == (2, 32, 4, 4)
    up = Upsample(16, 8)
    assert up(x).shape == (2, 8, 16, 16)
    # a 1x1-like conv (centre tap only) shows the nearest-neighbour doubling
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.bias.zero_()
        up.conv.weight[:, :, 1, 1] = torch.eye(8, 16)
    doubled = up(x)
    torch.testing.assert_close(doubled[:, :, ::2, ::2], x[:, :8])
    torch.testing.assert_close(doubled[:, :, 1::2, 1::2], x[:, :8])
