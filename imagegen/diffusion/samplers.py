"""Samplers: one signature, diffusers' reverse steps, our loop.

Owns `sample_ddpm`, `sample_ddim`, `sample_dpmpp_2m`, `sample_dpmpp_2m_sde`, `sample_unipc`, the
`SAMPLERS` registry, `sample(name, ...)` and `sample_images`, the entry point the cascade calls
(Imagen, Saharia et al. 2022: guided sampling with dynamic thresholding at every step).

Every sampler has the signature (after k-diffusion's `sampling.py`)

    sample_<method>(denoiser, x_T, *, diffusion, num_steps, generator=None, x0_transform=None,
                    progress=False) -> x0 [B, C, H, W]

where `denoiser(x_t, t) -> model_output` already has the conditions and guidance baked in
(guidance.py). The loop is the same for all: at each timestep the model output is converted to
x0 = diffusion.predict_x0(...), `x0_transform` (thresholding) is applied to it, and the thresholded
x0 is handed to the diffusers scheduler, built from the diffusion's own betas with
prediction_type="sample". Thresholding therefore happens once, in one function, for every solver;
without a transform the steps equal the scheduler's own with the native prediction_type (tested).
All grids start at t = T-1 (pure noise; "trailing" spacing, Lin et al. 2023) and end on x0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from tqdm.auto import tqdm

from imagegen.diffusion.common import check_finite, check_num_steps, check_probability, condition_batch, randn
from imagegen.diffusion.guidance import Denoiser, Model, guided_denoiser
from imagegen.diffusion.schedule import GaussianDiffusion
from imagegen.diffusion.thresholding import THRESHOLDING_MODES, threshold_x0
from imagegen.utils.checks import check_choice

X0Transform = Callable[[torch.Tensor], torch.Tensor]


def _scheduler_config(diffusion: GaussianDiffusion) -> dict:
    """The betas of `diffusion`, and x0 as the scheduler's input (the loop converts to it)."""
    return {
        "num_train_timesteps": diffusion.num_timesteps,
        "trained_betas": diffusion.betas.tolist(),
        "prediction_type": "sample",
    }


def _run(
    scheduler,
    denoiser: Denoiser,
    x_T: torch.Tensor,
    diffusion: GaussianDiffusion,
    num_steps: int,
    x0_transform: X0Transform | None,
    progress: bool,
    **step_kwargs,
) -> torch.Tensor:
    """The shared loop: model output -> x0 -> x0_transform -> scheduler.step, over the grid."""
    scheduler.set_timesteps(num_steps, device=x_T.device)
    x_t = x_T
    timesteps = scheduler.timesteps
    for i, timestep in enumerate(tqdm(timesteps, disable=not progress, desc=type(scheduler).__name__)):
        t = torch.full((x_T.shape[0],), int(timestep), device=x_T.device, dtype=torch.long)  # [B]
        output = check_finite(denoiser(x_t, t), f"step {i + 1}/{len(timesteps)} (t={int(timestep)})")
        x0 = diffusion.predict_x0(output, x_t, t)  # [B, C, H, W]
        if x0_transform is not None:
            x0 = x0_transform(x0)
        x_t = scheduler.step(x0, int(timestep), x_t, **step_kwargs).prev_sample
    return x_t.to(x_T.dtype)


def sample_ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    *,
    diffusion: GaussianDiffusion,
    num_steps: int,
    generator: torch.Generator | None = None,
    x0_transform: X0Transform | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020); num_steps = T visits every timestep."""
    check_num_steps(num_steps, diffusion.num_timesteps)
    scheduler = DDPMScheduler(**_scheduler_config(diffusion), clip_sample=False, timestep_spacing="trailing")
    return _run(scheduler, denoiser, x_T, diffusion, num_steps, x0_transform, progress, generator=generator)


def sample_ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    *,
    diffusion: GaussianDiffusion,
    num_steps: int,
    generator: torch.Generator | None = None,
    x0_transform: X0Transform | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DDIM, deterministic (eta = 0; Song et al. 2021)."""
    check_num_steps(num_steps, diffusion.num_timesteps)
    # DDIMScheduler steps from t to t - T // num_steps; the grid t_k = (k + 1) * (T // num_steps) - 1
    # follows that rule exactly and ends at t = -1 (x0), even when num_steps does not divide T.
    ratio = diffusion.num_timesteps // num_steps
    scheduler = DDIMScheduler(
        **_scheduler_config(diffusion),
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="leading",
        steps_offset=ratio - 1,
    )
    return _run(scheduler, denoiser, x_T, diffusion, num_steps, x0_transform, progress, eta=0.0)


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    *,
    diffusion: GaussianDiffusion,
    num_steps: int,
    generator: torch.Generator | None = None,
    x0_transform: X0Transform | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """DPM-Solver++(2M), multistep second order in data prediction (Lu et al. 2022)."""
    check_num_steps(num_steps, diffusion.num_timesteps)
    scheduler = DPMSolverMultistepScheduler(
        **_scheduler_config(diffusion),
        algorithm_type="dpmsolver++",
        solver_order=2,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="trailing",
    )
    return _run(scheduler, denoiser, x_T, diffusion, num_steps, x0_transform, progress)


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    *,
    diffusion: GaussianDiffusion,
    num_steps: int,
    generator: torch.Generator | None = None,
    x0_transform: X0Transform | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """SDE-DPM-Solver++(2M): the stochastic twin of dpmpp_2m (Lu et al. 2022, diffusers'
    "sde-dpmsolver++"). Fresh noise at every step corrects the errors an underfit model makes
    at high noise, where the ODE solvers commit early (measured in docs/results.md)."""
    check_num_steps(num_steps, diffusion.num_timesteps)
    scheduler = DPMSolverMultistepScheduler(
        **_scheduler_config(diffusion),
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="trailing",
    )
    return _run(scheduler, denoiser, x_T, diffusion, num_steps, x0_transform, progress, generator=generator)


def sample_unipc(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    *,
    diffusion: GaussianDiffusion,
    num_steps: int,
    generator: torch.Generator | None = None,
    x0_transform: X0Transform | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """UniPC, second-order predictor-corrector in data prediction, bh2 (Zhao et al. 2023)."""
    check_num_steps(num_steps, diffusion.num_timesteps)
    scheduler = UniPCMultistepScheduler(
        **_scheduler_config(diffusion),
        predict_x0=True,
        solver_type="bh2",
        solver_order=2,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="trailing",
    )
    return _run(scheduler, denoiser, x_T, diffusion, num_steps, x0_transform, progress)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "unipc": sample_unipc,
}


def sample(name: str, denoiser: Denoiser, x_T: torch.Tensor, **kwargs) -> torch.Tensor:
    """Run the sampler registered as `name` (one of SAMPLERS) with the common keyword arguments."""
    check_choice("sampler", name, tuple(SAMPLERS))
    return SAMPLERS[name](denoiser, x_T, **kwargs)


def _device_of(model: Model, cond: dict[str, torch.Tensor]) -> torch.device:
    """Where to sample: the conditions' device, else the model's parameters', else the CPU."""
    for value in cond.values():
        return value.device
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def sample_images(
    model: Model,
    shape: tuple[int, int, int, int],
    cond: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor] | None,
    diffusion: GaussianDiffusion,
    sampler: str = "dpmpp_2m",
    num_steps: int = 25,
    guidance_scale: float = 5.0,
    thresholding: str = "dynamic",
    percentile: float = 0.995,
    generator: torch.Generator | None = None,
    progress: bool = False,
    clamp: bool = True,
) -> torch.Tensor:
    """Guided, thresholded sampling from pure noise: the one call a pipeline stage makes.

    model(x_t, t, **cond) -> model_output in diffusion.prediction. shape (B, C, H, W). cond: tensors
    with batch B; uncond: the null condition (encoding of "") or a negative prompt's, batch 1 or B
    (None only with guidance_scale 1). x_T ~ N(0, I) is drawn from `generator` (any device; moved
    to the conditions' device). Returns x0 [B, C, H, W] float32, clamped to [-1, 1] (images;
    `clamp=False` for what is not an image, e.g. a prior's CLIP embeddings [B, E, 1, 1]).
    """
    check_choice("sampler", sampler, tuple(SAMPLERS))
    check_num_steps(num_steps, diffusion.num_timesteps)
    check_choice("thresholding", thresholding, THRESHOLDING_MODES)
    check_probability("percentile", percentile, low_open=True)
    if len(shape) != 4 or condition_batch(cond) not in (None, shape[0]):
        raise ValueError(f"shape must be (B, C, H, W) with B = the conditions' batch, got {tuple(shape)}")
    denoiser = guided_denoiser(model, cond, uncond, guidance_scale)
    x0_transform = functools.partial(threshold_x0, mode=thresholding, percentile=percentile)
    x_T = randn(shape, generator, _device_of(model, cond))  # [B, C, H, W]
    x0 = SAMPLERS[sampler](
        denoiser,
        x_T,
        diffusion=diffusion,
        num_steps=num_steps,
        generator=generator,
        x0_transform=x0_transform,
        progress=progress,
    )
    return x0.clamp(-1.0, 1.0) if clamp else x0
