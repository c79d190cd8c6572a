"""Sampler contract tests over every sampler, and proof that the loop wraps diffusers exactly."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from imagegen.diffusion import SAMPLERS, SCHEDULES, GaussianDiffusion, sample, sample_images, threshold_x0

PREDICTIONS = ("eps", "v", "x0")
SHAPE = (4, 3, 8, 8)


def reference_scheduler(name: str, diffusion: GaussianDiffusion, num_steps: int, **extra):
    """The diffusers scheduler configured as in samplers.py but with the native prediction_type."""
    common = {
        "num_train_timesteps": 1000,
        "beta_schedule": SCHEDULES[diffusion.schedule],
        "prediction_type": diffusion.prediction_type,
        **extra,
    }
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, timestep_spacing="trailing")
    if name == "ddim":
        return DDIMScheduler(
            **common, clip_sample=False, timestep_spacing="leading", steps_offset=1000 // num_steps - 1
        )
    if name in ("dpmpp_2m", "dpmpp_2m_sde"):
        return DPMSolverMultistepScheduler(
            **common,
            algorithm_type="sde-dpmsolver++" if name == "dpmpp_2m_sde" else "dpmsolver++",
            solver_order=2,
            final_sigmas_type="zero",
            timestep_spacing="trailing",
        )
    return UniPCMultistepScheduler(
        **common, solver_order=2, final_sigmas_type="zero", timestep_spacing="trailing"
    )


def reference_loop(name, model, x_T, diffusion, num_steps, generator=None, **extra):
    """A plain diffusers loop: the scheduler converts the native model output itself."""
    scheduler = reference_scheduler(name, diffusion, num_steps, **extra)
    scheduler.set_timesteps(num_steps)
    step_kwargs = {"ddpm": {"generator": generator}, "dpmpp_2m_sde": {"generator": generator}}.get(name, {})
    step_kwargs = {"eta": 0.0} if name == "ddim" else step_kwargs
    x_t = x_T
    for timestep in scheduler.timesteps:
        model_output = model(x_t, timestep.expand(x_T.shape[0]))
        x_t = scheduler.step(model_output, int(timestep), x_t, **step_kwargs).prev_sample
    return x_t


# ------------------------------------------------------------------------------------------------
# Contract: every sampler
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_shape_dtype_range_and_determinism(name, gaussian_model):
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    model = gaussian_model(diffusion, mean=0.0, std=2.0)  # data out of range: exercises the clamp
    kwargs = {"diffusion": diffusion, "sampler": name, "num_steps": 6, "guidance_scale": 3.0}
    cond, uncond = {"text_pooled": torch.ones(4, 2)}, {"text_pooled": torch.zeros(1, 2)}
    first = sample_images(model, SHAPE, cond, uncond, generator=torch.Generator().manual_seed(0), **kwargs)
    again = sample_images(model, SHAPE, cond, uncond, generator=torch.Generator().manual_seed(0), **kwargs)
    other = sample_images(model, SHAPE, cond, uncond, generator=torch.Generator().manual_seed(1), **kwargs)
    assert first.shape == SHAPE and first.dtype == torch.float32
    assert first.abs().max() <= 1 and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    direct = SAMPLERS[name](
        lambda x_t, t: model(x_t, t), torch.randn(SHAPE), diffusion=diffusion, num_steps=6
    )
    assert direct.shape == SHAPE and direct.dtype == torch.float32


@pytest.mark.parametrize("num_steps", [7, 10])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_oracle_denoiser_recovers_x0(name, prediction, num_steps, oracle_model):
    diffusion = GaussianDiffusion("cosine", 1000, prediction)
    x0 = torch.rand(SHAPE) * 2 - 1
    model = oracle_model(diffusion, x0)
    out = sample(
        name,
        lambda x_t, t: model(x_t, t),
        torch.randn(SHAPE),
        diffusion=diffusion,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
        x0_transform=functools.partial(threshold_x0, mode="dynamic"),
    )
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_guidance_scale_one_equals_the_conditional_prediction(name, gaussian_model):
    diffusion = GaussianDiffusion("cosine", 1000, "eps")
    batches = []

    def model(x_t, t, shift):
        batches.append(x_t.shape[0])
        return gaussian_model(diffusion, mean=0.2)(x_t, t) + shift.view(-1, 1, 1, 1)

    cond, uncond = {"shift": torch.full((4,), 0.1)}, {"shift": torch.full((1,), -3.0)}
    guided = sample_images(
        model,
        SHAPE,
        cond,
        uncond,
        diffusion,
        sampler=name,
        num_steps=5,
        guidance_scale=1.0,
        thresholding="none",
        generator=torch.Generator().manual_seed(2),
    )
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    plain = SAMPLERS[name](
        lambda x_t, t: model(x_t, t, **cond),
        x_T,
        diffusion=diffusion,
        num_steps=5,
        generator=torch.Generator().manual_seed(2),
    )
    assert torch.equal(guided, plain.clamp(-1, 1))
    assert set(batches) == {4}  # the unconditional half never ran
    sample_images(model, SHAPE, cond, uncond, diffusion, sampler=name, num_steps=5, guidance_scale=2.0)
    assert set(batches) == {4, 8}


# ------------------------------------------------------------------------------------------------
# The loop wraps diffusers' steps exactly
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_loop_equals_the_diffusers_scheduler_with_native_prediction(
    name, prediction, schedule, gaussian_model
):
    diffusion = GaussianDiffusion(schedule, 1000, prediction)
    model = gaussian_model(diffusion)
    x_T = torch.randn(SHAPE)
    ours = SAMPLERS[name](
        model, x_T, diffusion=diffusion, num_steps=8, generator=torch.Generator().manual_seed(4)
    )
    theirs = reference_loop(name, model, x_T, diffusion, 8, generator=torch.Generator().manual_seed(4))
    # eps on the cosine schedule: x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) at t = 999 divides
    # a float32 cancellation by 5e-5, so any two implementations differ by ~1e-3 there.
    tolerance = 3e-3 if (schedule, prediction) == ("cosine", "eps") else 1e-4
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddpm_with_dynamic_thresholding_equals_ddpm_scheduler_thresholding(prediction, gaussian_model):
    diffusion = GaussianDiffusion("cosine", 1000, prediction)
    model = gaussian_model(diffusion, mean=0.0, std=3.0)  # predicted x0 well outside [-1, 1]
    x_T = torch.randn(SHAPE)
    transform = functools.partial(threshold_x0, mode="dynamic", percentile=0.9)
    ours = SAMPLERS["ddpm"](
        model,
        x_T,
        diffusion=diffusion,
        num_steps=20,
        x0_transform=transform,
        generator=torch.Generator().manual_seed(5),
    )
    theirs = reference_loop(
        "ddpm",
        model,
        x_T,
        diffusion,
        20,
        generator=torch.Generator().manual_seed(5),
        thresholding=True,
        dynamic_thresholding_ratio=0.9,
        sample_max_value=1e9,
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    unthresholded = SAMPLERS["ddpm"](
        model, x_T, diffusion=diffusion, num_steps=20, generator=torch.Generator().manual_seed(5)
    )
    assert ours.abs().max() <= 1 < unthresholded.abs().max()


def test_ddpm_with_all_steps_visits_every_timestep_and_samples_the_data(gaussian_model):
    """The 1000-step reference: every timestep once, in order, and samples from N(0.3, 0.5^2) data."""
    diffusion = GaussianDiffusion("cosine", 1000, "eps")
    model = gaussian_model(diffusion, mean=0.3, std=0.5)
    seen = []

    def denoiser(x_t, t):
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],) and torch.all(t == t[0])
        seen.append(int(t[0]))
        return model(x_t, t)

    x_T = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(7))  # 12288 pixels
    out = SAMPLERS["ddpm"](
        denoiser, x_T, diffusion=diffusion, num_steps=1000, generator=torch.Generator().manual_seed(8)
    )
    assert seen == list(range(999, -1, -1))
    # standard error of the mean 0.5 / sqrt(12288) = 0.0045; these bounds are about 3 of them
    assert out.mean().item() == pytest.approx(0.3, abs=0.015)
    assert out.std().item() == pytest.approx(0.5, abs=0.015)


def test_sde_solver_samples_the_data_in_few_steps_where_ddpm_shrinks_it(gaussian_model):
    """N(0.3, 0.5^2) data, 25 steps from one x_T: dpmpp_2m_sde draws the right spread; DDPM's
    posterior variance over skipped steps is too small (std 0.44), the reason it is not the default."""
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    model = gaussian_model(diffusion, mean=0.3, std=0.5)
    x_T = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def draw(name):
        return SAMPLERS[name](
            model, x_T, diffusion=diffusion, num_steps=25, generator=torch.Generator().manual_seed(9)
        )

    sde, ddpm = draw("dpmpp_2m_sde"), draw("ddpm")
    assert sde.mean().item() == pytest.approx(0.3, abs=0.015)
    assert sde.std().item() == pytest.approx(0.5, abs=0.02)
    assert ddpm.std().item() < 0.47


# ------------------------------------------------------------------------------------------------
# Accuracy on data whose answer is known in closed form
# ------------------------------------------------------------------------------------------------


def test_deterministic_samplers_converge_to_the_exact_probability_flow(gaussian_model, gaussian_ode_solution):
    """Gaussian data: the ODE map from x_T to x0 is affine and known. Higher order pays off."""
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    model = gaussian_model(diffusion)
    x_T = torch.randn(SHAPE)
    exact = gaussian_ode_solution(diffusion, x_T)

    def error(name, num_steps):
        return (
            (SAMPLERS[name](model, x_T, diffusion=diffusion, num_steps=num_steps) - exact).abs().max().item()
        )

    assert error("dpmpp_2m", 25) < 5e-3 and error("unipc", 25) < 5e-3
    assert error("ddim", 25) > 10 * max(error("dpmpp_2m", 25), error("unipc", 25))
    assert error("ddim", 500) < 1e-2 < error("ddim", 50)


# ------------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [0, -3, 1001, 2.5])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bad_num_steps_names_the_argument(name, num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        SAMPLERS[name](
            lambda x_t, t: x_t, torch.zeros(1, 1, 2, 2), diffusion=GaussianDiffusion(), num_steps=num_steps
        )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"sampler": "euler"}, "sampler 'euler'; allowed: ddpm, ddim, dpmpp_2m, dpmpp_2m_sde, unipc"),
        ({"thresholding": "soft"}, "thresholding 'soft'; allowed: dynamic, static, none"),
        ({"num_steps": 0}, "num_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": 10**400}, "guidance_scale"),  # an int beyond float range
        ({"percentile": 1.5}, "percentile"),
        ({"percentile": "0.9"}, "percentile"),
        ({"shape": (3, 3, 8, 8)}, "shape"),
    ],
)
def test_sample_images_validates_every_argument(override, message):
    kwargs = {
        "shape": SHAPE,
        "cond": {"text_pooled": torch.ones(4, 2)},
        "uncond": {"text_pooled": torch.zeros(1, 2)},
        "diffusion": GaussianDiffusion(),
        **override,
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample_images(lambda x_t, t, text_pooled: x_t, **kwargs)


def test_sample_with_an_unknown_name_lists_the_samplers():
    with pytest.raises(ValueError, match="ddpm, ddim, dpmpp_2m, dpmpp_2m_sde, unipc"):
        sample(
            "heun", lambda x_t, t: x_t, torch.zeros(1, 1, 2, 2), diffusion=GaussianDiffusion(), num_steps=2
        )
