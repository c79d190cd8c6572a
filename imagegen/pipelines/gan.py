"""Generate with a trained GAN run behind the same interface as a diffusion stage.

    pipe = imagegen.load_pipeline("runs/shapes-gan-cpu-20261123-101500")   # dispatches on train.objective
    images = pipe("a red circle", seed=0, truncation=0.8)                   # list[PIL.Image]

Owns `GANPipeline` and `check_truncation`. A GAN draws an image in one forward pass of the EMA
generator, G_ema(z, e) with z ~ N(0, I) truncated to |z_i| <= truncation (Brock et al. 2019; DF-GAN,
Tao et al. 2022, samples with it too) and e the pooled embedding of the prompt from the run's
frozen text encoder. The run's checkpoint folder is all it needs: `config.yaml` (text encoder,
`gan.truncation`) and `ema/G/` (network.json + safetensors, no pickle).

The call signature is DiffusionPipeline's plus `truncation`, and arguments are checked by the
same functions (`imagegen.pipelines.base`). `guidance_scale`, `num_steps`, `sampler`,
`thresholding` and `negative_prompt` have no meaning for a GAN (no guidance, no sampler, no
unconditional branch): a valid value is ignored with a warning, once per pipeline and argument;
an invalid one raises ValueError as for diffusion.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from imagegen import factory
from imagegen.config import RunConfig, read_saved_config
from imagegen.diffusion import NonFiniteOutputError, check_finite
from imagegen.gan import sample_z
from imagegen.pipelines.base import (
    check_count,
    check_guidance,
    check_images,
    check_output_type,
    check_sampler,
    check_seed,
    check_thresholding,
    make_generator,
    normalize_prompts,
    repeat_negatives,
    resolve_device,
    sample_batches,
    to_output,
)

log = logging.getLogger("imagegen.generate")

NOT_FOR_GAN = ("guidance_scale", "num_steps", "sampler", "negative_prompt", "thresholding")


def check_truncation(truncation: float) -> float:
    """A number > 0; values >= 4 sample untruncated noise (see `imagegen.gan.sample_z`)."""
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not truncation > 0:
        raise ValueError(f"truncation: expected a number > 0 (>= 4 = no truncation), got {truncation!r}")
    return float(truncation)


class GANPipeline:
    """A text-conditional GAN run: frozen text encoder + EMA generator, one forward pass per image."""

    def __init__(self, checkpoint: Path, device: str | torch.device | None = None):
        self.checkpoint = checkpoint
        self.cfg: RunConfig = read_saved_config(checkpoint / "config.yaml")
        self.device = resolve_device(device)
        self.encoder = factory.build_text_encoder(self.cfg.text, device=self.device)
        self.generator_net = factory.load_network(checkpoint / "ema" / "G", map_location=self.device)
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"GANPipeline({self.checkpoint}, image_size={self.cfg.gan.image_size}, device={self.device})"

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = 0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        truncation: float | None = None,
        thresholding: str | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """len(prompt) * num_images_per_prompt images; `truncation` defaults to the run's gan.truncation.
        `output_type`: "pil" or "pt" (float32 [B, 3, H, W] in [-1, 1], CPU)."""
        prompts = normalize_prompts(prompt)
        check_images(prompts, num_images_per_prompt)
        seed = check_seed(seed)
        check_output_type(output_type)
        truncation = check_truncation(self.cfg.gan.truncation if truncation is None else truncation)
        self._check_unused(
            guidance_scale, num_steps, sampler, negative_prompt, thresholding, prompts, num_images_per_prompt
        )
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        generator = make_generator(seed, self.device)
        images = []
        for piece in sample_batches(len(prompts), "sampling GAN"):  # a bar when > 1 batch
            images.append(self._draw(prompts[piece], truncation, generator))
        return to_output(torch.cat(images), output_type)

    def _draw(self, prompts: list[str], truncation: float, generator: torch.Generator) -> torch.Tensor:
        """One batch: G_ema(z, e) [B, 3, H, W] in [-1, 1]; a NaN/inf output raises
        NonFiniteOutputError naming the run."""
        text = self.encoder.encode(prompts).to(self.device)
        z = sample_z(
            len(prompts), self.generator_net.z_dim, truncation, generator=generator, device=self.device
        )
        images = self.generator_net(z, text.pooled.float())  # [B, 3, H, W] in [-1, 1]
        try:
            check_finite(images, "the generator's single pass")
        except NonFiniteOutputError as error:
            raise NonFiniteOutputError(f"GAN {self.checkpoint}: {error}") from None
        return images

    def _check_unused(
        self, guidance_scale, num_steps, sampler, negative_prompt, thresholding, prompts, repeat
    ) -> None:
        """Validate the diffusion-only arguments as DiffusionPipeline does, then warn they are ignored."""
        given = {
            "guidance_scale": None if guidance_scale is None else check_guidance(guidance_scale),
            "num_steps": None if num_steps is None else check_count(num_steps, "num_steps"),
            "sampler": None if sampler is None else check_sampler(sampler),
            "negative_prompt": None
            if negative_prompt is None
            else repeat_negatives(negative_prompt, len(prompts) * repeat, repeat),
            "thresholding": None if thresholding is None else check_thresholding(thresholding),
        }
        for name in NOT_FOR_GAN:
            if given[name] is not None and name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "%s does not apply to a GAN (one generator pass, no guidance or sampler): ignored; "
                    "use truncation= to trade diversity for fidelity",
                    name,
                )
