"""Gradient penalties on the discriminator: DF-GAN's MA-GP and R1.

Owns `ma_gp` (matching-aware zero-centred gradient penalty, Tao et al. 2022, DF-GAN Sec. 3.3) and
`r1_penalty` (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?").
Both take logits already computed from inputs that require grad, differentiate them with
`create_graph=True` and return a scalar that can itself be backpropagated into D's parameters.

The discriminator scores each sample independently (no batch statistics), so the gradient of the
summed logits w.r.t. an input batch is the batch of per-sample gradients.
"""

from __future__ import annotations

import torch


def _per_sample_squared_norm(grad: torch.Tensor) -> torch.Tensor:
    """grad [B, ...] -> ||grad_i||^2 [B], accumulated in fp32 (the 6th power overflows fp16/bf16)."""
    return grad.float().flatten(1).square().sum(dim=1)


def ma_gp(
    logits: torch.Tensor,
    images: torch.Tensor,
    text_pooled: torch.Tensor,
    weight: float = 2.0,
    power: float = 6.0,
) -> torch.Tensor:
    """DF-GAN's matching-aware gradient penalty on real, matching (image, caption) pairs.

        L_MA-GP = weight * mean_i ( ||grad_x D(x_i, e_i)||^2 + ||grad_e D(x_i, e_i)||^2 )^(power / 2)

    i.e. weight * mean_i ||grad_(x, e) D||^power with the image and text gradients concatenated,
    which is DF-GAN's `2.0 * mean(grad_l2norm ** 6)` at the defaults. Written as a power of the
    squared norm so that no square root (infinite slope at 0) enters the double backward.

    logits [B] = D(images, text_pooled); images [B, 3, H, W] and text_pooled [B, T] must require
    grad and be the tensors the logits were computed from. Returns a scalar (fp32).
    """
    grad_images, grad_text = torch.autograd.grad(logits.sum(), (images, text_pooled), create_graph=True)
    squared = _per_sample_squared_norm(grad_images) + _per_sample_squared_norm(grad_text)  # [B]
    return weight * squared.pow(power / 2).mean()


def r1_penalty(logits: torch.Tensor, images: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 on real data: L_R1 = gamma / 2 * mean_i ||grad_x D(x_i)||^2.

    logits [B] = D(images, ...); images [B, 3, H, W] must require grad. Returns a scalar (fp32).
    """
    (grad_images,) = torch.autograd.grad(logits.sum(), (images,), create_graph=True)
    return gamma / 2 * _per_sample_squared_norm(grad_images).mean()
