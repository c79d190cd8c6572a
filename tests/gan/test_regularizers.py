"""MA-GP and R1 against closed forms on a linear D and an independent per-sample double backward."""

from __future__ import annotations

import pytest
import torch

from imagegen.gan.regularizers import ma_gp, r1_penalty


class LinearCritic(torch.nn.Module):
    """D(x, e) = <a, x> + <b, e>: grad_x D = a, grad_e D = b for every sample."""

    def __init__(self, image_numel: int, text_dim: int):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(image_numel) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(text_dim) * 0.3)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.a + text @ self.b


class SmallCritic(torch.nn.Module):
    """A non-linear D whose gradient norm varies per sample."""

    def __init__(self, text_dim: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.text = torch.nn.Linear(text_dim, 4)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        features = torch.tanh(self.conv(images)).mean(dim=(2, 3))  # [B, 4]
        return (features * torch.tanh(self.text(text))).sum(dim=1) + features.square().sum(dim=1)


def inputs(batch: int = 5):
    images = torch.randn(batch, 3, 4, 4, requires_grad=True)
    text = torch.randn(batch, 6, requires_grad=True)
    return images, text


@pytest.mark.parametrize(("weight", "power"), [(2.0, 6.0), (1.0, 2.0), (0.5, 3.0)])
def test_ma_gp_closed_form_on_linear_critic_and_its_parameter_gradient(weight, power):
    critic = LinearCritic(3 * 4 * 4, 6)
    images, text = inputs()
    penalty = ma_gp(critic(images, text), images, text, weight, power)
    squared = critic.a.detach().square().sum() + critic.b.detach().square().sum()
    torch.testing.assert_close(penalty, weight * squared ** (power / 2))
    penalty.backward()  # create_graph: the penalty trains D
    # d/da [w * S^(p/2)] = w * p/2 * S^(p/2 - 1) * 2a
    torch.testing.assert_close(critic.a.grad, weight * power * squared ** (power / 2 - 1) * critic.a.detach())


def test_ma_gp_matches_per_sample_double_backward_on_nonlinear_critic():
    critic = SmallCritic(6)
    images, text = inputs()
    penalty = ma_gp(critic(images, text), images, text, weight=2.0, power=6.0)
    (grad_penalty,) = torch.autograd.grad(penalty, critic.conv.weight)

    norms = []
    for index in range(images.shape[0]):  # one sample at a time: no reliance on batch independence
        image = images[index : index + 1].detach().requires_grad_()
        caption = text[index : index + 1].detach().requires_grad_()
        logit = critic(image, caption).sum()
        grad_image, grad_text = torch.autograd.grad(logit, (image, caption), create_graph=True)
        norms.append(torch.cat([grad_image.flatten(), grad_text.flatten()]).norm())  # DF-GAN's sqrt form
    reference = 2.0 * torch.stack(norms).pow(6).mean()
    (grad_reference,) = torch.autograd.grad(reference, critic.conv.weight)
    torch.testing.assert_close(penalty, reference)
    torch.testing.assert_close(grad_penalty, grad_reference)
    assert grad_penalty.abs().sum() > 0


def test_r1_closed_form_on_linear_critic():
    critic = LinearCritic(3 * 4 * 4, 6)
    images, text = inputs()
    penalty = r1_penalty(critic(images, text), images, gamma=10.0)
    torch.testing.assert_close(penalty, 10.0 / 2 * critic.a.detach().square().sum())
    penalty.backward()
    torch.testing.assert_close(critic.a.grad, 10.0 * critic.a.detach())
    assert critic.b.grad is None or critic.b.grad.abs().sum() == 0  # R1 ignores the text gradient
