"""Gaussian diffusion: the noise schedule, the forward process and the three parameterizations.

Owns `GaussianDiffusion`: discrete-time variance-preserving diffusion (Ho et al. 2020) with the
cosine schedule of Nichol & Dhariwal 2021 or the linear one of Ho et al., and the eps / v / x0
parameterizations (v from Salimans & Ho 2022, used by Imagen Video and Imagen's SR stages).
The schedule math is diffusers' `DDPMScheduler` (betas, `alphas_cumprod`, `add_noise`,
`get_velocity`), not a rewrite; the samplers build their schedulers from the same `betas`.

Notation (docs/notation.md): alpha_bar[t] = prod_{s<=t} (1 - beta_s), x_t = sqrt(alpha_bar) x0 +
sqrt(1 - alpha_bar) eps, v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0,
snr = alpha_bar / (1 - alpha_bar), log_snr = log(snr).
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from imagegen.utils.checks import check_choice

# our name -> diffusers' name
SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


class GaussianDiffusion:
    """A noise schedule over `num_timesteps` integer timesteps and the network's parameterization.

    Args:
        schedule: "cosine" (diffusers "squaredcos_cap_v2") | "linear" (beta 1e-4 .. 0.02).
        num_timesteps: T; timesteps are the integers 0 .. T-1 (T-1 is nearly pure noise).
        prediction: what the network outputs: "eps" | "v" | "x0".

    Attributes:
        betas: [T] float32, the per-step variances beta_t.
        alpha_bar: [T] float32, the cumulative products prod_{s<=t} (1 - beta_s), decreasing.
    """

    def __init__(self, schedule: str = "cosine", num_timesteps: int = 1000, prediction: str = "v"):
        check_choice("schedule", schedule, tuple(SCHEDULES))
        check_choice("prediction", prediction, tuple(PREDICTIONS))
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 2:
            raise ValueError(f"num_timesteps must be an integer >= 2, got {num_timesteps!r}")
        self.schedule = schedule
        self.num_timesteps = num_timesteps
        self.prediction = prediction
        self.scheduler = DDPMScheduler(
            num_train_timesteps=num_timesteps,
            beta_schedule=SCHEDULES[schedule],
            prediction_type=PREDICTIONS[prediction],
            clip_sample=False,
        )
        self.betas = self.scheduler.betas.clone()
        self.alpha_bar = self.scheduler.alphas_cumprod.clone()

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion(schedule={self.schedule!r}, num_timesteps={self.num_timesteps}, "
            f"prediction={self.prediction!r})"
        )

    @property
    def prediction_type(self) -> str:
        """The prediction's name in diffusers ("epsilon" | "v_prediction" | "sample")."""
        return PREDICTIONS[self.prediction]

    # ---------------------------------------------------------------------------------------
    # Per-timestep coefficients
    # ---------------------------------------------------------------------------------------

    def _timesteps(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """`t` as a long tensor [B] on `like`'s device (an int is repeated over the batch)."""
        t = torch.as_tensor(t, device=like.device, dtype=torch.long)
        return t.expand(like.shape[0]) if t.ndim == 0 else t

    def _alpha_bar_at(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar[t] shaped [B, 1, ..., 1] to broadcast against `like` [B, C, H, W]."""
        alpha_bar = self.alpha_bar.to(like.device)[self._timesteps(t, like)]  # [B]
        return alpha_bar.view(-1, *([1] * (like.ndim - 1)))  # [B, 1, 1, 1]

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio snr = alpha_bar / (1 - alpha_bar); t [B] long -> [B] float32."""
        alpha_bar = self.alpha_bar.to(t.device)[t]
        return alpha_bar / (1 - alpha_bar)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """log_snr = log(alpha_bar) - log(1 - alpha_bar); t [B] long -> [B] float32."""
        alpha_bar = self.alpha_bar.to(t.device)[t]
        return torch.log(alpha_bar) - torch.log1p(-alpha_bar)

    # ---------------------------------------------------------------------------------------
    # Forward process and training target
    # ---------------------------------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Forward process x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps.

        x0, eps [B, C, H, W]; t [B] long -> x_t [B, C, H, W] (diffusers' `add_noise`).
        """
        return self.scheduler.add_noise(x0, eps, self._timesteps(t, x0))

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for the configured prediction: eps, x0, or
        v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (diffusers' `get_velocity`). [B, C, H, W]."""
        if self.prediction == "eps":
            return eps
        if self.prediction == "x0":
            return x0
        return self.scheduler.get_velocity(x0, eps, self._timesteps(t, x0))

    # ---------------------------------------------------------------------------------------
    # Parameterization conversions (model_output in the configured prediction)
    # ---------------------------------------------------------------------------------------

    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted clean image from the network output. All tensors [B, C, H, W]; t [B] long.

        eps: x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)
        v:   x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v
        x0:  x0 = model_output
        """
        if self.prediction == "x0":
            return model_output
        alpha_bar = self._alpha_bar_at(t, x_t)
        # `** 0.5` as in DDPMScheduler.step, so the conversion agrees with it bit for bit.
        if self.prediction == "eps":
            return (x_t - (1 - alpha_bar) ** 0.5 * model_output) / alpha_bar**0.5
        return alpha_bar**0.5 * x_t - (1 - alpha_bar) ** 0.5 * model_output

    def predict_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise from the network output. All tensors [B, C, H, W]; t [B] long.

        eps: eps = model_output
        v:   eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t
        x0:  eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)
        """
        if self.prediction == "eps":
            return model_output
        alpha_bar = self._alpha_bar_at(t, x_t)
        if self.prediction == "v":
            return alpha_bar**0.5 * model_output + (1 - alpha_bar) ** 0.5 * x_t
        return (x_t - alpha_bar**0.5 * model_output) / (1 - alpha_bar) ** 0.5
