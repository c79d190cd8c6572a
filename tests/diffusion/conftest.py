"""Analytic denoisers for the diffusion tests: no neural nets, exact answers.

- `oracle_model(diffusion, x0)`: knows the one clean image x0 and returns the exact eps / v / x0
  for any (x_t, t), so every sampler must recover x0.
- `gaussian_model(diffusion, mean, std)`: the exact posterior mean E[x0 | x_t] for data
  x0 ~ N(mean, std^2) per pixel; its probability-flow ODE has a closed-form solution.
Both accept (and ignore, unless they use it) conditioning keywords.
"""

from __future__ import annotations

import pytest
import torch

from imagegen.diffusion import GaussianDiffusion


def output_from_x0(
    diffusion: GaussianDiffusion, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The network output (in diffusion.prediction) whose predicted x0 is x0_hat."""
    alpha_bar = diffusion.alpha_bar[t].view(-1, 1, 1, 1)
    eps_hat = (x_t - alpha_bar.sqrt() * x0_hat) / (1 - alpha_bar).sqrt()
    return diffusion.target(x0_hat, eps_hat, t)


def gaussian_posterior_mean(diffusion, x_t, t, mean, std):
    """E[x0 | x_t] for x0 ~ N(mean, std^2), ab = alpha_bar:
    mean + sqrt(ab) std^2 / (ab std^2 + 1 - ab) (x_t - sqrt(ab) mean)."""
    alpha_bar = diffusion.alpha_bar[t].view(-1, 1, 1, 1)
    gain = alpha_bar.sqrt() * std**2 / (alpha_bar * std**2 + 1 - alpha_bar)
    return mean + gain * (x_t - alpha_bar.sqrt() * mean)


@pytest.fixture
def oracle_model():
    def build(diffusion, x0):
        def model(x_t, t, **cond):
            return output_from_x0(diffusion, x0.expand_as(x_t), x_t, t)

        return model

    return build


@pytest.fixture
def gaussian_model():
    def build(diffusion, mean=0.3, std=0.5):
        def model(x_t, t, **cond):
            return output_from_x0(diffusion, gaussian_posterior_mean(diffusion, x_t, t, mean, std), x_t, t)

        return model

    return build


@pytest.fixture
def gaussian_ode_solution():
    """x0 reached by the exact probability-flow ODE from x_T at t = T-1, for N(mean, std^2) data."""

    def solve(diffusion, x_T, mean=0.3, std=0.5):
        alpha_bar = diffusion.alpha_bar[-1]
        standardized = (x_T - alpha_bar.sqrt() * mean) / (alpha_bar * std**2 + 1 - alpha_bar).sqrt()
        return mean + std * standardized

    return solve


@pytest.fixture
def from_x0():
    """`output_from_x0(diffusion, x0_hat, x_t, t)`: the network output whose predicted x0 is x0_hat."""
    return output_from_x0
