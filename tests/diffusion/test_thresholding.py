"""Dynamic thresholding (Imagen §2.3) against its definition, diffusers, and static clipping."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from imagegen.diffusion import GaussianDiffusion, guided_denoiser, sample_dpmpp_2m, threshold_x0


@pytest.mark.parametrize("percentile", [0.9, 0.995, 1.0])
def test_dynamic_threshold_is_the_definition(percentile):
    x0 = 3 * torch.randn(4, 3, 8, 8)
    x0[0] = torch.rand(3, 8, 8) * 1.8 - 0.9  # a sample inside [-1, 1]: s = 1, unchanged
    level = torch.quantile(x0.abs().flatten(1), percentile, dim=1).clamp(min=1).view(-1, 1, 1, 1)
    expected = x0.clamp(-level, level) / level
    torch.testing.assert_close(threshold_x0(x0, "dynamic", percentile), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(threshold_x0(x0, "dynamic", percentile)[0], x0[0])


def test_modes_and_dtype():
    x0 = 3 * torch.randn(2, 3, 8, 8)
    assert threshold_x0(x0, "none") is x0
    assert torch.equal(threshold_x0(x0, "static"), x0.clamp(-1, 1))
    half = threshold_x0(x0.half(), "dynamic")
    assert half.dtype == torch.float16 and half.abs().max() <= 1
    with pytest.raises(ValueError, match="thresholding.*dynamic, static, none"):
        threshold_x0(x0, "clip")
    with pytest.raises(ValueError, match="percentile"):
        threshold_x0(x0, "dynamic", 0.0)


def test_matches_ddpm_scheduler_thresholding_without_an_upper_cap():
    x0, x_t = (3 * torch.randn(2, 4, 3, 8, 8)).unbind(0)
    common = {"prediction_type": "sample", "thresholding": True, "dynamic_thresholding_ratio": 0.99}
    uncapped = DDPMScheduler(**common, sample_max_value=1e9)
    theirs = uncapped.step(x0, 500, x_t).pred_original_sample
    torch.testing.assert_close(threshold_x0(x0, "dynamic", 0.99), theirs, rtol=1e-6, atol=1e-6)
    # diffusers caps s at sample_max_value; its default 1.0 turns "dynamic" into static clipping.
    capped = DDPMScheduler(**common, sample_max_value=1.0).step(x0, 500, x_t).pred_original_sample
    assert torch.equal(capped, threshold_x0(x0, "static"))


def test_at_guidance_10_dynamic_stays_in_range_and_saturates_less_than_static():
    """x0-predicting model whose conditional and unconditional images differ: guided x0 ~ +-15."""
    diffusion = GaussianDiffusion("cosine", 1000, "x0")
    generator = torch.Generator().manual_seed(0)
    image_cond = torch.rand(2, 3, 8, 8, generator=generator) * 1.6 - 0.8
    image_uncond = torch.rand(2, 3, 8, 8, generator=generator) * 1.6 - 0.8

    def model(x_t, t, which):
        return torch.where(
            which.view(-1, 1, 1, 1) > 0, image_cond.repeat(2, 1, 1, 1), image_uncond.repeat(2, 1, 1, 1)
        )

    denoiser = guided_denoiser(model, {"which": torch.ones(2)}, {"which": torch.zeros(1)}, 10.0)
    x_T = torch.randn(2, 3, 8, 8, generator=generator)
    saturated = {}
    for mode in ("dynamic", "static"):
        seen = []

        def record(x0, mode=mode, seen=seen):
            seen.append(threshold_x0(x0, mode, 0.995))
            return seen[-1]

        sample_dpmpp_2m(denoiser, x_T, diffusion=diffusion, num_steps=10, x0_transform=record)
        assert all(x0.abs().max() <= 1 for x0 in seen)
        saturated[mode] = sum(int((x0.abs() == 1).sum()) for x0 in seen)
    raw = image_uncond + 10 * (image_cond - image_uncond)
    assert raw.abs().max() > 5  # the unthresholded guided x0 is far out of range
    assert saturated["dynamic"] * 10 < saturated["static"]
