"""The web app's form logic without a browser (imagegen/cli/app_form.py): form values -> a checked
`imagegen.generate` call, the call as Python that reproduces it, the status line, the model box."""

from __future__ import annotations

import ast
import os
import sys

import pytest
from PIL import Image

from imagegen.cli import app_form
from imagegen.cli.app_form import build_call, model_choices, submit


def _form(**changes) -> dict:
    form = {
        "model": "runs/tiny",
        "prompt": "a red circle",
        "negative_prompt": "",
        "guidance_scale": "",
        "num_steps": "",
        "sampler": app_form.MODEL_DEFAULT,
        "seed": "0",
        "num_images": 4,
    }
    return {**form, **changes}


def _parsed_call(code: str) -> tuple[list, dict]:
    """The positional and keyword arguments of the one imagegen.generate(...) call in `code`."""
    tree = ast.parse(code)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert len(calls) == 1 and ast.unparse(calls[0].func) == "imagegen.generate", code
    args = [ast.literal_eval(arg) for arg in calls[0].args]
    return args, {kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords}


def test_blank_boxes_are_left_to_the_model_and_given_ones_are_parsed():
    call = build_call(**_form())
    assert call.prompt == "a red circle"
    assert call.kwargs == {"model": "runs/tiny", "seed": 0, "num_images_per_prompt": 4}
    call = build_call(
        **_form(guidance_scale=" 3.5 ", num_steps="8", sampler="ddim", seed="", negative_prompt="x")
    )
    assert call.kwargs == {
        "model": "runs/tiny",
        "negative_prompt": "x",
        "guidance_scale": 3.5,
        "num_steps": 8,
        "sampler": "ddim",
        "seed": None,  # blank seed: fresh randomness, said in the call
        "num_images_per_prompt": 4,
    }
    assert build_call(**_form(num_steps=8.0, num_images=2.0)).kwargs["num_steps"] == 8  # slider floats


@pytest.mark.parametrize(
    "prompt", ['a "quoted" circle', "it's\na newline", "ünïcödé ☃ \\ backslash", "tab\tand \u2028 separator"]
)
def test_the_python_call_parses_back_to_exactly_the_call(prompt):
    call = build_call(**_form(prompt=prompt, guidance_scale="7", num_steps="12", sampler="unipc", seed="42"))
    args, kwargs = _parsed_call(call.code())
    assert args == [prompt.strip()]
    assert kwargs == call.kwargs
    assert call.code().startswith("import imagegen\n")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"model": ""}, "model"),
        ({"model": None}, "model"),
        ({"guidance_scale": "1000"}, "guidance_scale"),
        ({"guidance_scale": "-1"}, "guidance_scale"),
        ({"guidance_scale": "nan"}, "guidance_scale"),
        ({"guidance_scale": "five"}, "guidance_scale"),
        ({"num_steps": "4.5"}, "num_steps"),
        ({"num_steps": "0"}, "num_steps"),
        ({"num_steps": "1000000"}, "num_steps"),
        ({"sampler": "euler_magic"}, "sampler"),
        ({"seed": "-1"}, "seed"),
        ({"seed": "1.5"}, "seed"),
        ({"num_images": 0}, "num_images_per_prompt"),
        ({"num_images": app_form.MAX_APP_IMAGES + 1}, "num_images_per_prompt"),
        ({"negative_prompt": "x" * 20_000}, "negative_prompt"),
    ],
)
def test_a_bad_value_is_refused_naming_the_argument(changes, named):
    with pytest.raises(ValueError, match=f"^{named}: "):
        build_call(**_form(**changes))


def _fake_generate(calls: list):
    def generate(prompt, **kwargs):
        calls.append((prompt, kwargs))
        return [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(kwargs["num_images_per_prompt"])]

    return generate


@pytest.mark.parametrize(("count", "size"), [(1, (104, 104)), (4, (404, 104)), (6, (404, 204))])
def test_submit_runs_the_shown_call_and_returns_a_grid_at_most_four_wide(count, size):
    calls, progress = [], []
    grid, code, status = submit(
        _form(num_images=count), lambda done, text: progress.append(text), _fake_generate(calls)
    )
    assert calls == [("a red circle", build_call(**_form(num_images=count)).kwargs)]
    assert _parsed_call(code) == (["a red circle"], calls[0][1])
    assert grid.size == size  # 16 px cells upscaled to 96, 4 px padding, at most 4 columns
    assert (
        status.startswith('<div class="status-ok">') and f"{count} image" in status and "16x16 px" in status
    )
    assert progress and "runs/tiny" in progress[0]


def test_submit_turns_refusals_and_failures_into_one_status_line_and_never_raises():
    calls: list = []
    grid, code, status = submit(_form(guidance_scale="500"), None, _fake_generate(calls))
    assert grid is None and code == "" and not calls  # refused before anything runs
    assert status.startswith('<div class="status-error">error: guidance_scale: ')

    def missing(prompt, **kwargs):
        raise FileNotFoundError("model path runs/nope does not exist")

    grid, code, status = submit(_form(model="runs/nope"), None, missing)
    assert grid is None and "runs/nope" in code  # the call is shown, so the user sees what failed
    assert "error: model path runs/nope does not exist" in status

    def broken(prompt, **kwargs):
        raise RuntimeError("<b>shape</b> mismatch\nline two")

    grid, code, status = submit(_form(), None, broken)
    assert grid is None
    assert "error: unexpected RuntimeError: &lt;b&gt;shape&lt;/b&gt; mismatch line two" in status  # escaped
    assert "Traceback" not in status and "\n" not in status


def test_model_choices_list_default_only_when_it_loads_then_runs_newest_first_then_cascades(tmp_path):
    older, newer, empty, cascade = (tmp_path / name for name in ("older", "newer", "empty", "cascade"))
    for run, mtime in ((older, 1_000_000), (newer, 2_000_000)):
        checkpoint = run / "checkpoints" / "checkpoint-000002"
        checkpoint.mkdir(parents=True)
        os.utime(checkpoint, (mtime, mtime))
    (empty / "checkpoints").mkdir(parents=True)  # no complete checkpoint: not offered
    cascade.mkdir()
    (cascade / "manifest.json").write_text("{}")

    def unavailable():
        raise FileNotFoundError("model path default does not exist")

    runs = [str(newer), str(older), str(cascade)]
    assert model_choices(tmp_path, unavailable) == runs
    assert model_choices(tmp_path, lambda: object()) == ["default", *runs]
    assert model_choices(tmp_path / "absent", unavailable) == []


def test_the_app_says_in_one_line_which_extra_to_install_when_gradio_is_missing(monkeypatch, capsys):
    from imagegen.cli import app

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    assert app.main(["--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: the web app needs gradio, the optional extra: pip install "imagegen[app]"'


def test_the_app_listens_on_this_machine_only_and_offers_no_share_link():
    pytest.importorskip("gradio", reason="gradio (the app extra) is not installed")
    from imagegen.cli import app

    args = app.build_parser().parse_args([])
    options = app.launch_options(args.host, args.port)
    assert options["server_name"] == "127.0.0.1" and options["share"] is False
    assert not any("share" in action.dest for action in app.build_parser()._actions)
