"""The web app's logic without the web: form values -> a checked `imagegen.generate` call, the same
call as copyable Python, running it, and the model box's choices. No gradio import, so unit tests
cover all of it without a browser (`imagegen/cli/app.py` only lays out the page and wires it here).

    call = build_call(model="runs/shapes-cpu", prompt="a red circle", negative_prompt="",
                      guidance_scale=5.0, num_steps=None, sampler="", seed=0, num_images=4)
    call.code()              # 'import imagegen\\nimages = imagegen.generate("a red circle", ...)'
    images, grid = run_call(call)

A blank number or sampler means "the model's own default" (its `sample` config, or each stage's
for a cascade) and is left out of the call, exactly as `imagegen.generate` treats None.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen.cli.common import one_line

log = logging.getLogger("imagegen.app")

DEFAULT_MODEL = "default"  # the bundled model's name for load_pipeline, where the package ships one
MODEL_DEFAULT = "model default"  # the sampler box's first entry: the model's own sampler
MAX_APP_IMAGES = 16  # per click: a grid of at most 4 x 4
MAX_APP_STEPS = 1000  # sampler steps per click; more is a typo, not a request
GRID_COLUMNS = 4


@dataclass
class GenerateCall:
    """One checked `imagegen.generate(prompt, **kwargs)` call: what the page runs and shows."""

    prompt: str
    kwargs: dict[str, Any] = field(default_factory=dict)  # only the settings the form gave

    @property
    def num_images(self) -> int:
        return self.kwargs.get("num_images_per_prompt", 1)

    def code(self) -> str:
        """The call as Python that reproduces the page's images (`repr` quotes every string)."""
        arguments = [_literal(self.prompt)] + [
            f"{key}={_literal(value)}" for key, value in self.kwargs.items()
        ]
        body = "".join(f"    {argument},\n" for argument in arguments)
        return f"import imagegen\n\nimages = imagegen.generate(\n{body})\n"


def _literal(value: Any) -> str:
    """A Python literal for a form value: strings double-quoted (JSON escapes are Python escapes)."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def build_call(
    model: str | None,
    prompt: str | None,
    negative_prompt: str | None = None,
    guidance_scale: str | float | None = None,
    num_steps: str | float | None = None,
    sampler: str | None = None,
    seed: str | float | None = 0,
    num_images: str | float = 1,
) -> GenerateCall:
    """The form's values (text and numbers as a web form sends them; blank = None) -> a checked
    call. ValueError naming the argument for anything `imagegen.generate` would refuse, for text
    that is not a number, and for an empty model or prompt (a blank box is a slip here; the library
    reads "" as an unconditional sample)."""
    from imagegen.pipelines.base import (
        check_count,
        check_guidance,
        check_sampler,
        check_seed,
        normalize_prompts,
    )

    model = (model or "").strip()
    if not model:
        raise ValueError("model: choose a model or type a run, checkpoint or cascade folder path")
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("prompt: type a prompt, e.g. 'a red circle above a blue square'")
    normalize_prompts(prompt)
    kwargs: dict[str, Any] = {"model": model}
    if negative_prompt and negative_prompt.strip():
        kwargs["negative_prompt"] = normalize_prompts(negative_prompt.strip(), "negative_prompt")[0]
    guidance_scale = form_number(guidance_scale, "guidance_scale")
    if guidance_scale is not None:
        kwargs["guidance_scale"] = check_guidance(guidance_scale)
    num_steps = form_number(num_steps, "num_steps")
    if num_steps is not None:
        kwargs["num_steps"] = check_count(whole_number(num_steps, "num_steps"), "num_steps", MAX_APP_STEPS)
    if sampler and sampler != MODEL_DEFAULT:
        kwargs["sampler"] = check_sampler(sampler)
    seed = form_number(seed, "seed")
    kwargs["seed"] = check_seed(None if seed is None else whole_number(seed, "seed"))
    count = form_number(num_images, "num_images_per_prompt")
    count = check_count(whole_number(count, "num_images_per_prompt"), "num_images_per_prompt")
    kwargs["num_images_per_prompt"] = check_count(count, "num_images_per_prompt", MAX_APP_IMAGES)
    return GenerateCall(prompt, kwargs)


def form_number(value: str | float | None, name: str) -> float | int | None:
    """A number box's value: blank (None or whitespace) -> None; "5", "5.0", "1e3" -> a number;
    any other text -> ValueError naming `name`. Numbers pass through unchanged."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {text!r:.100}") from None


def whole_number(value: float | int, name: str) -> int:
    """A form number that must be an integer: 4.0 -> 4; 4.5, NaN or text -> ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected a whole number, got {value!r:.100}")
    if isinstance(value, float) and not value.is_integer():  # NaN and inf are not integers either
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def run_call(call: GenerateCall, generate: Callable[..., list] | None = None) -> tuple[list, Any]:
    """Run the call (with `imagegen.generate` unless given) -> (the PIL images, one grid of them,
    at most GRID_COLUMNS wide, small images upscaled by `make_grid`)."""
    from imagegen.utils.images import make_grid

    if generate is None:
        from imagegen.pipelines import generate as library_generate

        generate = library_generate
    images = generate(call.prompt, **call.kwargs)
    return images, make_grid(images, columns=min(len(images), GRID_COLUMNS))


def model_choices(runs_dir: str | Path, probe_default: Callable[[], object] | None = None) -> list[str]:
    """The model box's suggestions: "default" when the bundled model loads here, then every run
    (with a complete checkpoint, newest first) and every cascade folder under `runs_dir`.
    `probe_default` loads the bundled model (default: `load_pipeline("default")`); any failure
    just leaves "default" out."""
    from imagegen.cascade.manifest import is_cascade_folder
    from imagegen.utils.runs import newest_first

    choices = [DEFAULT_MODEL] if _default_loads(probe_default) else []
    runs_dir = Path(runs_dir)
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    cascades = [p for p in folders if is_cascade_folder(p)]
    runs = newest_first(p for p in folders if p not in cascades)
    return choices + [str(p) for p in runs + cascades]


def _default_loads(probe_default: Callable[[], object] | None) -> bool:
    if probe_default is None:
        from imagegen.pipelines import load_pipeline

        def probe_default() -> object:
            return load_pipeline(DEFAULT_MODEL)

    try:
        probe_default()
    except Exception as error:  # noqa: BLE001 - any failure means "not available here", said once
        log.info("no bundled model %r here (%s); listing runs only", DEFAULT_MODEL, one_line(error))
        return False
    return True


def describe(call: GenerateCall, images: list, seconds: float) -> str:
    """The status line after a successful call."""
    width, height = images[0].size
    return f"{_images(len(images))} of {width}x{height} px from {call.kwargs['model']} in {seconds:.1f} s"


def _images(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''}"


Progress = Callable[[float, str], None]  # (fraction done, what is happening)


def submit(form: dict[str, Any], progress: Progress | None = None, generate: Callable | None = None):
    """What the generate button does: `form` (build_call's keyword arguments) -> (grid or None,
    the call as Python or "", status). A user's mistake (ValueError, OSError: a bad value, a
    missing or corrupt model) becomes a one-line status; anything else is logged with its
    traceback on the console and named in one line. Never raises."""
    import time

    from imagegen.cli.common import user_errors

    try:
        call = build_call(**form)
    except ValueError as error:
        return None, "", status_error(one_line(error))
    if progress is not None:
        progress(0.0, f"sampling {_images(call.num_images)} with {call.kwargs['model']}")
    start = time.perf_counter()
    try:
        images, grid = run_call(call, generate)
    except user_errors() as error:
        return None, call.code(), status_error(one_line(error))
    except Exception as error:  # noqa: BLE001 - the page shows one line; the console the traceback
        log.exception("generation failed")
        return (
            None,
            call.code(),
            status_error(f"unexpected {type(error).__name__}: {one_line(error)} (see the console)"),
        )
    return grid, call.code(), status_ok(describe(call, images, time.perf_counter() - start))


def status_ok(text: str) -> str:
    """The status box's HTML for a finished call (one escaped line, classed for the page's CSS)."""
    return _status_html("ok", text)


def status_error(text: str) -> str:
    """The status box's HTML for a refused or failed call."""
    return _status_html("error", f"error: {text}")


def _status_html(kind: str, text: str) -> str:
    import html

    return f'<div class="status-{kind}">{html.escape(text)}</div>'
