"""imagegen.diffusion: Gaussian diffusion on any denoiser `model(x_t, t, **cond)`.

schedule.py      GaussianDiffusion: schedule, forward process, eps / v / x0 conversions
losses.py        DiffusionLoss: conditioning dropout, min-SNR-gamma weighting
guidance.py      guided_denoiser: classifier-free guidance in one doubled batch
thresholding.py  threshold_x0: dynamic (Imagen) / static / none
samplers.py      sample_ddpm / sample_ddim / sample_dpmpp_2m(_sde) / sample_unipc, SAMPLERS, sample_images
noise_aug.py     noise conditioning augmentation of a super-resolution stage's low-res input
stage.py         sample_stage: one stage (text-to-image or super-resolution), for previews and pipelines
"""

from imagegen.diffusion.common import NonFiniteOutputError, check_finite
from imagegen.diffusion.guidance import Denoiser, Model, guided_denoiser
from imagegen.diffusion.losses import LOSS_WEIGHTINGS, DiffusionLoss, drop_condition, min_snr_weight
from imagegen.diffusion.samplers import (
    SAMPLERS,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_images,
    sample_unipc,
)
from imagegen.diffusion.schedule import PREDICTIONS, SCHEDULES, GaussianDiffusion
from imagegen.diffusion.stage import sample_stage
from imagegen.diffusion.thresholding import THRESHOLDING_MODES, dynamic_threshold_level, threshold_x0

__all__ = [
    "LOSS_WEIGHTINGS",
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "THRESHOLDING_MODES",
    "Denoiser",
    "DiffusionLoss",
    "GaussianDiffusion",
    "Model",
    "NonFiniteOutputError",
    "check_finite",
    "drop_condition",
    "dynamic_threshold_level",
    "guided_denoiser",
    "min_snr_weight",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_images",
    "sample_stage",
    "sample_unipc",
    "threshold_x0",
]
