"""GaussianDiffusion: schedules, forward process, targets and conversions equal the closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from imagegen.diffusion import GaussianDiffusion

PREDICTIONS = ("eps", "v", "x0")


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=generator)
    t = torch.tensor([0, 17, 500, 999])
    return x0, eps, t


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_alpha_bar_matches_the_named_schedule(schedule):
    diffusion = GaussianDiffusion(schedule, 1000, "eps")
    assert diffusion.alpha_bar.shape == (1000,) and diffusion.alpha_bar.dtype == torch.float32
    assert torch.all(diffusion.alpha_bar[1:] < diffusion.alpha_bar[:-1])
    if schedule == "cosine":
        # Nichol & Dhariwal: alpha_bar(t) = f(t) / f(0), f(t) = cos((t/T + 0.008) / 1.008 * pi / 2)^2
        def f(step):
            return math.cos((step / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

        for step in (0, 250, 500, 900):
            assert diffusion.alpha_bar[step].item() == pytest.approx(f(step + 1) / f(0), rel=1e-4)
    else:
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        expected = torch.cumprod(1 - betas, 0)
        torch.testing.assert_close(diffusion.alpha_bar.double(), expected, rtol=1e-5, atol=1e-7)


def test_q_sample_is_the_closed_form(batch):
    x0, eps, t = batch
    diffusion = GaussianDiffusion("cosine", 1000, "eps")
    alpha_bar = diffusion.alpha_bar[t].view(-1, 1, 1, 1)
    expected = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    torch.testing.assert_close(diffusion.q_sample(x0, t, eps), expected, rtol=1e-6, atol=1e-6)


def test_targets_are_the_closed_forms(batch):
    x0, eps, t = batch
    alpha_bar = GaussianDiffusion("cosine", 1000, "eps").alpha_bar[t].view(-1, 1, 1, 1)
    v = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0
    expected = {"eps": eps, "v": v, "x0": x0}
    for prediction in PREDICTIONS:
        target = GaussianDiffusion("cosine", 1000, prediction).target(x0, eps, t)
        torch.testing.assert_close(target, expected[prediction], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_invert_the_target(batch, prediction):
    x0, eps, t = batch
    t = torch.tensor([0, 17, 500, 900])  # at t = 999, eps -> x0 divides by sqrt(alpha_bar) = 5e-5
    diffusion = GaussianDiffusion("linear", 1000, prediction)
    x_t = diffusion.q_sample(x0, t, eps)
    model_output = diffusion.target(x0, eps, t)
    torch.testing.assert_close(diffusion.predict_x0(model_output, x_t, t), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(diffusion.predict_eps(model_output, x_t, t), eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_predict_x0_agrees_with_ddpm_scheduler(batch, prediction):
    x0, eps, t = batch
    diffusion = GaussianDiffusion("cosine", 1000, prediction)
    scheduler = DDPMScheduler(
        1000, beta_schedule="squaredcos_cap_v2", clip_sample=False, prediction_type=diffusion.prediction_type
    )
    x_t, model_output = torch.randn(2, 1, 3, 8, 8).unbind(0)
    step = 500
    ours = diffusion.predict_x0(model_output, x_t, torch.tensor([step]))
    theirs = scheduler.step(model_output, step, x_t).pred_original_sample
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_snr_and_log_snr():
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    t = torch.tensor([0, 300, 999])
    alpha_bar = diffusion.alpha_bar[t]
    torch.testing.assert_close(diffusion.snr(t), alpha_bar / (1 - alpha_bar))
    torch.testing.assert_close(
        diffusion.log_snr(t), torch.log(alpha_bar / (1 - alpha_bar)), rtol=1e-5, atol=1e-5
    )
    assert torch.all(diffusion.log_snr(t)[1:] < diffusion.log_snr(t)[:-1])


@pytest.mark.parametrize(
    ("kwargs", "argument", "allowed"),
    [
        ({"schedule": "sigmoid"}, "schedule", "cosine, linear"),
        ({"prediction": "epsilon"}, "prediction", "eps, v, x0"),
        ({"num_timesteps": 1}, "num_timesteps", ""),
    ],
)
def test_bad_names_list_the_allowed(kwargs, argument, allowed):
    with pytest.raises(ValueError, match=argument) as error:
        GaussianDiffusion(**kwargs)
    assert allowed in str(error.value)
