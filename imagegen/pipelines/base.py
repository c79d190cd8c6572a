"""What every pipeline shares: the `Pipeline` protocol and the argument checks, written once.

    pipe = imagegen.load_pipeline(path)          # imagegen.pipelines.loading
    images = pipe(prompts, *, num_images_per_prompt=1, seed=0, negative_prompt=None,
                  guidance_scale=None, num_steps=None, sampler=None, thresholding=None,
                  output_type="pil", ...)        # list[PIL.Image] or float [B, 3, H, W] in [-1, 1]

Every argument is checked here, before any network runs, with a ValueError naming it: prompts,
counts, seeds, guidance scales, samplers, thresholding modes, negative prompts, devices, low-res
images and output types. Checkpoint resolution and "the newest run" live one layer lower
(`imagegen.utils.runs`), shared with the trainer's `--resume latest` and with
`imagegen.cascade assemble`; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from PIL import Image
from tqdm.auto import tqdm

from imagegen.config import MAX_GUIDANCE_SCALE
from imagegen.data.transforms import pil_to_tensor, to_rgb
from imagegen.diffusion import SAMPLERS, THRESHOLDING_MODES
from imagegen.utils.checks import check_choice
from imagegen.utils.images import tensor_to_pil
from imagegen.utils.runs import DEFAULT_RUNS_DIR, newest_run, resolve_checkpoint

__all__ = [
    "DEFAULT_RUNS_DIR",
    "MAX_IMAGES_PER_CALL",
    "MAX_PROMPT_CHARS",
    "OUTPUT_TYPES",
    "SAMPLE_BATCH",
    "Pipeline",
    "check_count",
    "check_guidance",
    "check_images",
    "check_output_type",
    "check_sampler",
    "check_seed",
    "check_thresholding",
    "lowres_tensor",
    "make_generator",
    "sample_batches",
    "newest_run",
    "normalize_prompts",
    "repeat_negatives",
    "resolve_checkpoint",
    "resolve_device",
    "to_output",
]

MAX_IMAGES_PER_CALL = 1024  # len(prompt) * num_images_per_prompt: more is refused up front
MAX_PROMPT_CHARS = 10_000  # a longer prompt is truncated to the encoder's max_length anyway
SAMPLE_BATCH = 16  # images sampled at once; a larger request is drawn in chunks of this size
OUTPUT_TYPES = ("pil", "pt")


class Pipeline(Protocol):
    """A loaded generator: a diffusion run, a cascade folder or a GAN run (`load_pipeline`)."""

    checkpoint: Any  # what was loaded (a checkpoint or cascade folder), printed by the CLI
    device: torch.device

    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_images_per_prompt: int = 1,
        seed: int | None = 0,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor: ...


# ------------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------------


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


def check_sampler(sampler: str) -> str:
    """One of `imagegen.diffusion.SAMPLERS`."""
    return _check_name("sampler", sampler, tuple(SAMPLERS))


def check_thresholding(thresholding: str) -> str:
    """One of `imagegen.diffusion.THRESHOLDING_MODES` (dynamic, static, none)."""
    return _check_name("thresholding", thresholding, THRESHOLDING_MODES)


def _check_name(argument: str, value: str, allowed: tuple[str, ...]) -> str:
    try:
        return check_choice(argument, value, allowed)
    except ValueError as error:
        raise ValueError(f"{argument}: {error}") from None


def check_output_type(output_type: str) -> str:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type: expected one of {OUTPUT_TYPES}, got {output_type!r}")
    return output_type


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


def repeat_negatives(negative_prompt: str | list[str] | None, count: int, repeat: int) -> list[str]:
    """The unconditional branch's prompts for `count` images (`repeat` per prompt): [""] (the null
    condition, broadcast over the batch) when None, one negative for all, or one per prompt."""
    if negative_prompt is None:
        return [""]
    negatives = normalize_prompts(negative_prompt, "negative_prompt")
    if len(negatives) == 1:
        return negatives
    if len(negatives) * repeat != count:
        raise ValueError(
            f"negative_prompt: give one negative prompt or one per prompt "
            f"({count // repeat}), got {len(negatives)}"
        )
    return [n for n in negatives for _ in range(repeat)]


def lowres_tensor(lowres_image: Any, num_prompts: int, repeat: int) -> torch.Tensor | None:
    """lowres_image (PIL, list of PIL, tensor [3, h, w] or [N, 3, h, w] in [-1, 1]) -> [B, 3, h, h]
    float32 on the CPU, prompt-major like the prompts (B = num_prompts * repeat); None stays None."""
    if lowres_image is None:
        return None
    if isinstance(lowres_image, Image.Image):
        lowres_image = [lowres_image]
    if (
        isinstance(lowres_image, (list, tuple))
        and lowres_image
        and all(isinstance(image, Image.Image) for image in lowres_image)
    ):
        sizes = {image.size for image in lowres_image}
        if len(sizes) != 1:
            raise ValueError(f"lowres_image: every image must have the same size; got {sorted(sizes)}")
        tensor = torch.stack([pil_to_tensor(to_rgb(image)) for image in lowres_image])  # [N, 3, h, w]
    elif isinstance(lowres_image, torch.Tensor):
        tensor = lowres_image[None] if lowres_image.ndim == 3 else lowres_image
        if tensor.ndim != 4 or tensor.shape[1] != 3 or not tensor.is_floating_point():
            raise ValueError(
                f"lowres_image: a float tensor [3, h, w] or [N, 3, h, w] in [-1, 1] expected; got "
                f"{tensor.dtype} of shape {tuple(lowres_image.shape)}"
            )
        low, high = float(tensor.min()), float(tensor.max())
        if low < -1.001 or high > 1.001:
            raise ValueError(f"lowres_image: tensor values must be in [-1, 1]; got [{low:.3g}, {high:.3g}]")
        tensor = tensor.detach().float().cpu()
    else:
        raise ValueError(
            f"lowres_image: expected a PIL image, a list of them, or a tensor; got {lowres_image!r}"
        )
    if tensor.shape[-1] != tensor.shape[-2]:
        raise ValueError(f"lowres_image: must be square; got {tensor.shape[-1]}x{tensor.shape[-2]} (w x h)")
    if tensor.shape[0] not in (1, num_prompts):
        raise ValueError(
            f"lowres_image: give one image or one per prompt ({num_prompts}), got {tensor.shape[0]}"
        )
    tensor = tensor.expand(num_prompts, -1, -1, -1) if tensor.shape[0] == 1 else tensor
    return tensor.repeat_interleave(repeat, dim=0)  # [B, 3, h, h], prompt-major like the prompts


# ------------------------------------------------------------------------------------------------
# Shared pieces of a call
# ------------------------------------------------------------------------------------------------


def sample_batches(count: int, desc: str = "sampling") -> Iterator[slice]:
    """Slices of at most SAMPLE_BATCH over `count` images (bounded memory whatever the request),
    with a progress bar on stderr (tqdm, one tick per batch) when there is more than one batch."""
    starts = range(0, count, SAMPLE_BATCH)
    for start in tqdm(
        starts, desc=desc, unit="batch", disable=len(starts) <= 1, leave=False, dynamic_ncols=True
    ):
        yield slice(start, start + SAMPLE_BATCH)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded with `seed`, or from fresh entropy when seed is None."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    return generator


def to_output(images: torch.Tensor, output_type: str) -> list[Image.Image] | torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> PIL images ("pil") or the float32 tensor on the CPU ("pt")."""
    return images.float().cpu() if output_type == "pt" else tensor_to_pil(images)
