"""Sinusoidal timestep embeddings: the closed form, odd widths, dtype handling, the MLP."""

from __future__ import annotations

import math

import torch

from imagegen.nn import TimestepEmbedding, sinusoidal_embedding


def test_sinusoid_matches_closed_form():
    positions = torch.tensor([0.0, 1.0, 17.0, 999.0])
    emb = sinusoidal_embedding(positions, dim=8, max_period=10_000.0)
    assert emb.shape == (4, 8)
    # column 0 has frequency 1: cos(p); column half has sin(p); column 1 frequency 10000^(-1/4)
    torch.testing.assert_close(emb[:, 0], torch.cos(positions))
    torch.testing.assert_close(emb[:, 4], torch.sin(positions))
    torch.testing.assert_close(emb[:, 1], torch.cos(positions * 10_000 ** (-1 / 4)))
    assert math.isclose(emb[0].square().sum().item(), 4.0)  # cos(0)=1 on the 4 cosine columns


def test_odd_width_is_zero_padded_and_integer_positions_equal_float():
    emb_int = sinusoidal_embedding(torch.tensor([3, 500]), dim=7)
    emb_float = sinusoidal_embedding(torch.tensor([3.0, 500.0]), dim=7)
    assert emb_int.shape == (2, 7) and emb_int.dtype == torch.float32
    assert torch.all(emb_int[:, -1] == 0)
    torch.testing.assert_close(emb_int, emb_float)


def test_nearby_timesteps_are_distinguished_by_the_mlp():
    embed = TimestepEmbedding(32)
    out = embed(torch.tensor([10, 11, 10]))
    assert out.shape == (3, 32)
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], out[1])
