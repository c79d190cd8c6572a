"""`python -m imagegen.app [--runs runs/] [--host 127.0.0.1] [--port 7860]`: a local web page to
try any run, checkpoint, cascade folder, GAN run or the bundled model (docs/app.md).

Only the page lives here (Gradio, the optional extra `pip install "imagegen[app]"`): its controls,
and one handler wired to `app_form.submit`, which checks the form, runs `imagegen.generate` and
writes the call as Python. It listens on 127.0.0.1 unless `--host` says otherwise; no public
share link is offered.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from imagegen.utils.cli_parser import CliParser

GRADIO_MISSING = 'error: the web app needs gradio, the optional extra: pip install "imagegen[app]"'
CSS = """
#grid img { image-rendering: pixelated; }
.status-ok { color: #166534; }
.status-error { color: #b91c1c; font-weight: 600; }
footer { display: none !important; }
"""


def build_parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n\n")[0].replace("\n", " ")  # the first paragraph, not its first line
    parser = CliParser(prog="python -m imagegen.app", description=summary)
    parser.add_argument("--runs", default="runs", help="folder whose runs and cascades the model box lists")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    try:
        import gradio  # noqa: F401 - only to say clearly when the extra is missing
    except ImportError:
        print(GRADIO_MISSING, file=sys.stderr)
        return 2
    from imagegen.cli.common import setup_logging

    setup_logging()
    page = build_page(args.runs)
    print(f"imagegen app: http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    page.queue(default_concurrency_limit=1).launch(**launch_options(args.host, args.port))
    return 0


def launch_options(host: str, port: int) -> dict[str, Any]:
    """gradio's launch arguments: local, no share link, no server-side rendering (needs Node), and
    a theme on system fonts (the default one fetches web fonts, which a machine offline lacks)."""
    import gradio as gr

    font = ["ui-sans-serif", "system-ui", "DejaVu Sans", "sans-serif"]
    theme = gr.themes.Soft(font=font, font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"])
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "ssr_mode": False,
        "show_error": False,
        "quiet": True,
        "theme": theme,
        "css": CSS,
    }


def build_page(runs_dir: str | Path, probe_default=None):
    """The page: the form on the left; the grid, a status line and the call as Python on the right."""
    import gradio as gr

    from imagegen.cli import app_form

    choices = app_form.model_choices(runs_dir, probe_default)
    with gr.Blocks(title="imagegen", analytics_enabled=False) as page:
        gr.Markdown("## imagegen: text to image")
        with gr.Row():
            with gr.Column(scale=2):
                inputs = _form(gr, choices, runs_dir)
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3):
                outputs = _outputs(gr)

        def on_generate(*values, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - gradio's idiom
            form = dict(zip(FORM_FIELDS, values))
            return app_form.submit(form, lambda done, text: progress(done, desc=text))

        for event in (button.click, inputs[1].submit):  # the button, or Enter in the prompt box
            event(on_generate, inputs, outputs, show_progress="full")
    return page


FORM_FIELDS = (
    "model",
    "prompt",
    "negative_prompt",
    "guidance_scale",
    "num_steps",
    "sampler",
    "seed",
    "num_images",
)


def _form(gr, choices: list[str], runs_dir: str | Path) -> list:
    """The controls, in FORM_FIELDS order."""
    from imagegen.cli.app_form import MAX_APP_IMAGES, MODEL_DEFAULT
    from imagegen.diffusion import SAMPLERS

    model = gr.Dropdown(
        choices,
        value=choices[0] if choices else None,
        allow_custom_value=True,
        label="model",
        info=f"a run or cascade under {runs_dir}/, or type any run, checkpoint or cascade path",
        elem_id="model",
    )
    prompt = gr.Textbox(label="prompt", placeholder="a red circle above a blue square", elem_id="prompt")
    negative = gr.Textbox(label="negative prompt", placeholder="(none)", elem_id="negative")
    with gr.Row():
        guidance = gr.Textbox(label="guidance scale", placeholder="the model's", elem_id="guidance")
        steps = gr.Textbox(label="steps", placeholder="the model's", elem_id="steps")
    with gr.Row():
        samplers = [MODEL_DEFAULT, *SAMPLERS]
        sampler = gr.Dropdown(samplers, value=MODEL_DEFAULT, label="sampler", elem_id="sampler")
        seed = gr.Textbox("0", label="seed", placeholder="random", elem_id="seed")
    count = gr.Slider(1, MAX_APP_IMAGES, value=4, step=1, label="number of images", elem_id="count")
    return [model, prompt, negative, guidance, steps, sampler, seed, count]


def _outputs(gr) -> list:
    """The grid, the status line and the call as Python, in `app_form.submit`'s order."""
    grid = gr.Image(
        label="images",
        type="pil",
        format="png",
        interactive=False,
        elem_id="grid",
        height=440,
        buttons=["download", "fullscreen"],
    )
    status = gr.HTML(elem_id="status")
    code = gr.Code(label="the same call in Python", language="python", elem_id="code", lines=8)
    return [grid, code, status]
