"""Load a trained model once, generate many times: `load_pipeline(path)` and `generate(...)`.

    pipe = imagegen.load_pipeline("runs/shapes-cpu-20261123-101500")
    images = pipe("a red circle above a blue square", guidance_scale=5.0, seed=0)   # list[PIL.Image]
    images = imagegen.generate(["a red circle", "two blue squares"], num_images_per_prompt=4)

`path` may be a run directory (its newest checkpoint is used), one checkpoint folder, or None
(the newest run under `runs/`, and the pipeline says which). Sampling uses the EMA weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from imagegen import factory
from imagegen.cascade.fast_sampling import sampling_network
from imagegen.config import MAX_GUIDANCE_SCALE, RunConfig, read_saved_config
from imagegen.utils.images import tensor_to_pil
from imagegen.utils.integrity import GENERATION_FILES, CorruptCheckpointError, verify_checkpoint
from imagegen.utils.runs import intact_checkpoint, is_checkpoint, latest_checkpoint

log = logging.getLogger("imagegen.generate")

DEFAULT_RUNS_DIR = Path("runs")


# ------------------------------------------------------------------------------------------------
# Finding what to load
# ------------------------------------------------------------------------------------------------


def newest_run(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    runs = [p for p in runs_dir.iterdir() if p.is_dir() and latest_checkpoint(p)] if runs_dir.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"no trained run under {runs_dir}/ (train one with `python -m imagegen.train --config ...` "
            "or pass model=PATH)"
        )
    return max(runs, key=lambda p: latest_checkpoint(p).stat().st_mtime)


def resolve_checkpoint(path: str | Path | None) -> Path:
    """A run dir, a checkpoint folder, or None (newest run) -> a checkpoint folder."""
    if path is None:
        run = newest_run()
        log.warning("no model given: using the newest run, %s", run)
        path = run
    path = Path(path)
    if is_checkpoint(path) or (path / "trainer.json").is_file():
        verify_checkpoint(path, GENERATION_FILES)  # named explicitly: no fallback; names the bad file
        return path
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    if latest_checkpoint(path) is None:
        raise FileNotFoundError(f"{path} holds no complete checkpoint (checkpoints/checkpoint-N/)")
    checkpoint = intact_checkpoint(path, GENERATION_FILES)  # newest intact; skipped ones are named
    if checkpoint is None:
        raise CorruptCheckpointError(f"{path}: every checkpoint is corrupt (see the warnings above)")
    return checkpoint


# ------------------------------------------------------------------------------------------------
# Argument checks (shared by the pipeline, the module-level function and the CLI)
# ------------------------------------------------------------------------------------------------


MAX_IMAGES_PER_CALL = 1024  # len(prompt) * num_images_per_prompt: more is refused up front
MAX_PROMPT_CHARS = 10_000  # a longer prompt is truncated to the encoder's max_length anyway
SAMPLE_BATCH = 16  # images sampled at once; a larger request is drawn in chunks of this size


def normalize_prompts(prompts: str | list[str], name: str = "prompt") -> list[str]:
    """A list of UTF-8-encodable strings of at most MAX_PROMPT_CHARS, at most MAX_IMAGES_PER_CALL."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"{name}: expected a string or a non-empty list of strings, got {prompts!r:.200}")
    if len(prompts) > MAX_IMAGES_PER_CALL:
        raise ValueError(
            f"{name}: {len(prompts)} prompts, more than the {MAX_IMAGES_PER_CALL} allowed per call"
        )
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise ValueError(
                f"{name}: every prompt must be a string; got {prompt!r:.200} ({type(prompt).__name__})"
            )
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"{name}: a prompt of {len(prompt)} characters; at most {MAX_PROMPT_CHARS} allowed"
            )
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{name}: {prompt!r:.80} is not valid text ({error.reason})") from None
    return list(prompts)


def check_count(value: int, name: str, limit: int | None = None) -> int:
    """A positive integer, at most `limit` when given."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r:.200}")
    if limit is not None and value > limit:
        raise ValueError(f"{name}: {value} is more than the {limit} allowed")
    return value


def check_images(prompts: list[str], num_images_per_prompt: int) -> int:
    """num_images_per_prompt, refused when len(prompts) * it exceeds MAX_IMAGES_PER_CALL."""
    check_count(num_images_per_prompt, "num_images_per_prompt")
    if len(prompts) * num_images_per_prompt > MAX_IMAGES_PER_CALL:
        raise ValueError(
            f"num_images_per_prompt: {num_images_per_prompt} images for each of {len(prompts)} prompts is "
            f"more than the {MAX_IMAGES_PER_CALL} images allowed per call"
        )
    return num_images_per_prompt


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to generate on: `device`, or cuda when available else cpu; ValueError naming
    `device` for a name torch does not know or a CUDA device this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device: unknown device {device!r:.100}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and (
        not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(f"device: {device!r} is not available on this machine; use cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {device!r} is not supported; use cpu or cuda")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} is not available on this machine; use cpu")
    return parsed


def check_seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed: expected an integer in [0, 2**63) or None, got {seed!r}")
    return seed


def check_guidance(guidance_scale: float) -> float:
    """A number in [0, MAX_GUIDANCE_SCALE]: larger scales only saturate every pixel."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise ValueError(f"guidance_scale: expected a number >= 0, got {guidance_scale!r:.200}")
    if not 0 <= guidance_scale <= MAX_GUIDANCE_SCALE:  # NaN compares false; an int is never cast
        raise ValueError(
            f"guidance_scale: expected a number in [0, {MAX_GUIDANCE_SCALE:g}], got {guidance_scale!r:.200}"
        )
    return float(guidance_scale)


def check_sampler(sampler: str | None) -> str | None:
    """None (the run's default) or one of the registered samplers."""
    from imagegen.diffusion import SAMPLERS

    if sampler is not None and (not isinstance(sampler, str) or sampler not in SAMPLERS):
        raise ValueError(f"sampler: unknown sampler {sampler!r:.100}; allowed: {', '.join(SAMPLERS)}")
    return sampler


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


class DiffusionPipeline:
    """One text-conditioned diffusion stage: text encoder + EMA U-Net + sampler."""

    def __init__(self, checkpoint: Path, device: str | torch.device | None = None):
        self.checkpoint = checkpoint
        self.cfg: RunConfig = read_saved_config(checkpoint / "config.yaml")
        self.device = resolve_device(device)
        self.encoder = factory.build_text_encoder(self.cfg.text, device=self.device)
        self.model = factory.load_unet(checkpoint / "ema" / "model", self.device)
        # eager on CPU; compiled or CUDA-graph replayed per the run's `speed` section on a GPU
        self.denoiser = sampling_network(self.model, self.cfg.speed, self.device)
        self.diffusion = factory.build_diffusion(self.cfg.diffusion)

    def __repr__(self) -> str:
        return f"DiffusionPipeline({self.checkpoint}, stage={self.cfg.stage}, device={self.device})"

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
        thresholding: str | None = None,
    ) -> list[Image.Image]:
        """len(prompt) * num_images_per_prompt images; every argument is checked before sampling.
        None for guidance_scale, num_steps, sampler and thresholding means the run's `sample` config
        (what the run was tuned with, e.g. configs/shapes-cpu.yaml)."""
        from imagegen.diffusion import THRESHOLDING_MODES
        from imagegen.utils.checks import check_choice

        prompts = normalize_prompts(prompt)
        check_images(prompts, num_images_per_prompt)
        if guidance_scale is None:
            guidance_scale = self.cfg.sample.guidance_scale
        guidance_scale, seed = check_guidance(guidance_scale), check_seed(seed)
        thresholding = self.cfg.sample.thresholding if thresholding is None else thresholding
        check_choice("thresholding", thresholding, THRESHOLDING_MODES)
        if num_steps is not None:
            check_count(num_steps, "num_steps", limit=self.diffusion.num_timesteps)
        check_sampler(sampler)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = self._negatives(negative_prompt, len(prompts), num_images_per_prompt)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed) if seed is not None else generator.seed()
        options = {
            "sampler": self.cfg.sample.sampler if sampler is None else sampler,
            "num_steps": num_steps or self.cfg.sample.num_steps,
            "guidance_scale": guidance_scale,
            "thresholding": thresholding,
        }
        images = []
        for start in range(0, len(prompts), SAMPLE_BATCH):  # bounded memory whatever the request
            piece = slice(start, start + SAMPLE_BATCH)
            batch_negatives = negatives if len(negatives) == 1 else negatives[piece]
            images += self._sample(prompts[piece], batch_negatives, generator, **options)
        return images

    def _sample(
        self, prompts, negatives, generator, sampler, num_steps, guidance_scale, thresholding
    ) -> list[Image.Image]:
        """One batch of images; a NaN/inf model output raises NonFiniteOutputError naming the stage."""
        from imagegen.diffusion import NonFiniteOutputError, sample_images

        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives).to(self.device)
        size, sample = self.cfg.model.image_size, self.cfg.sample
        try:
            images = sample_images(
                self.denoiser,
                (len(prompts), self.cfg.model.out_channels, size, size),
                text.as_cond(),
                null.as_cond(),
                self.diffusion,
                sampler=sampler,
                num_steps=num_steps,
                guidance_scale=guidance_scale,
                thresholding=thresholding,
                percentile=sample.threshold_percentile,
                generator=generator,
            )  # [B, 3, H, W] in [-1, 1]
        except NonFiniteOutputError as error:
            raise NonFiniteOutputError(f"stage {self.cfg.stage} ({self.checkpoint}): {error}") from None
        return tensor_to_pil(images)

    @staticmethod
    def _negatives(negative_prompt, count: int, repeat: int) -> list[str]:
        if negative_prompt is None:
            return [""]  # the null condition, broadcast over the batch
        negatives = normalize_prompts(negative_prompt, "negative_prompt")
        if len(negatives) == 1:
            return negatives
        if len(negatives) * repeat != count:
            raise ValueError(
                f"negative_prompt: give one negative prompt or one per prompt "
                f"({count // repeat}), got {len(negatives)}"
            )
        return [n for n in negatives for _ in range(repeat)]


def load_pipeline(path: str | Path | None = None, device: str | torch.device | None = None):
    """Load a run, checkpoint or cascade folder (manifest.json) for repeated generation."""
    from imagegen.cascade.manifest import is_cascade_folder

    if is_cascade_folder(path):
        from imagegen.cascade.cascade_pipeline import CascadePipeline

        return CascadePipeline(path, device=device)
    return open_checkpoint(resolve_checkpoint(path), device=device)


def open_checkpoint(checkpoint: Path, device: str | torch.device | None = None):
    """The pipeline of one checkpoint folder, by its config's `train.objective`: diffusion or GAN."""
    objective = read_saved_config(checkpoint / "config.yaml").train.objective
    if objective == "cascade":
        raise ValueError(
            f"{checkpoint} is a checkpoint of a joint cascade run: assemble it into a cascade folder "
            f"first (python -m imagegen.cascade assemble {checkpoint.parent.parent} --out CASCADE_DIR), "
            "then load or generate with that folder"
        )
    if objective == "gan":
        from imagegen.cascade.gan_pipeline import GANPipeline

        return GANPipeline(checkpoint, device=device)
    return DiffusionPipeline(checkpoint, device=device)


_LOADED: dict[tuple[str, str], DiffusionPipeline] = {}


def generate(
    prompt: str | list[str],
    guidance_scale: float | None = None,
    num_steps: int | None = None,
    sampler: str | None = None,
    seed: int | None = 0,
    negative_prompt: str | list[str] | None = None,
    model: str | Path | None = None,
    num_images_per_prompt: int = 1,
    device: str | None = None,
    truncation: float | None = None,
    **cascade_options,
) -> list[Image.Image]:
    """Text -> images with a trained model (loaded once per path and kept for later calls).

    `prompt`: a string or a list of strings ("" = unconditional); `guidance_scale` w >= 0
    (1 = conditional only; None = the run's `sample.guidance_scale`, or each stage's default for a
    cascade); `num_steps`/`sampler` default to the run's `sample` config; `negative_prompt`
    replaces the unconditional branch;
    `model`: run dir, checkpoint, cascade folder, or None for the newest run under runs/.
    `cascade_options` (cascade folders only): `stage_overrides`, `stop_after`, `lowres_image`,
    `output_type` (see `CascadePipeline.__call__`). `truncation` (GAN runs only; None = the run's
    gan.truncation): a diffusion model ignores it with a warning, and a GAN ignores guidance_scale,
    num_steps, sampler and negative_prompt with a warning. Returns len(prompt) * num_images_per_prompt
    PIL images.
    """
    from imagegen.cascade.manifest import is_cascade_folder

    if is_cascade_folder(model):
        from imagegen.cascade.cascade_pipeline import generate_cascade

        return generate_cascade(
            prompt,
            model=model,
            device=device,
            guidance_scale=guidance_scale,
            num_steps=num_steps,
            sampler=sampler,
            seed=seed,
            negative_prompt=negative_prompt,
            num_images_per_prompt=num_images_per_prompt,
            **cascade_options,
        )
    if cascade_options:
        raise ValueError(f"{sorted(cascade_options)}: only a cascade folder (with manifest.json) takes these")
    check_images(normalize_prompts(prompt), num_images_per_prompt)
    check_guidance(5.0 if guidance_scale is None else guidance_scale)
    check_seed(seed)
    key = (str(resolve_checkpoint(model).resolve()), str(device))
    if key not in _LOADED:
        _LOADED[key] = open_checkpoint(Path(key[0]), device=device)
    gan_options = {"truncation": truncation}  # a GAN: no guidance scale unless one is given
    if isinstance(_LOADED[key], DiffusionPipeline):
        gan_options = {}  # guidance_scale None: the run's sample.guidance_scale
        ignore_truncation(truncation, key[0])
    return _LOADED[key](
        prompt,
        guidance_scale=guidance_scale,
        num_steps=num_steps,
        sampler=sampler,
        seed=seed,
        negative_prompt=negative_prompt,
        num_images_per_prompt=num_images_per_prompt,
        **gan_options,
    )


_WARNED_TRUNCATION: set[str] = set()


def ignore_truncation(truncation: float | None, checkpoint: str) -> None:
    """A diffusion model ignores `truncation` with a warning (once per model), as a GAN ignores
    guidance_scale: one call site can sweep both kinds of model."""
    if truncation is not None and checkpoint not in _WARNED_TRUNCATION:
        _WARNED_TRUNCATION.add(checkpoint)
        log.warning("truncation applies only to a GAN; ignored by the diffusion model %s", checkpoint)
