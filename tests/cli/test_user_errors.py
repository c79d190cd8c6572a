"""A user's mistake on any command prints one line naming the problem and exits 2, never a
traceback; the library raises a ValueError naming the argument (issue 15, "tracebacks")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import imagegen
from imagegen.config import load_config
from imagegen.training import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny-test.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, text_cache_dir) -> Path:
    from imagegen.training.trainer import train

    root = tmp_path_factory.mktemp("user-errors")
    overrides = [f"train.output_dir={root}", f"text.cache_dir={text_cache_dir}", "train.max_steps=1"]
    return ckpt.latest_checkpoint(train(load_config(TINY, overrides)).run_dir)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "error: " in err
    return err


def _exit_code(main, argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse-level errors
        return stop.code


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"train: [1, 2\n", "malformed YAML at line 2"), (b"name: \xff\xfe\n", "not UTF-8")],
)
def test_a_malformed_or_non_utf8_config_is_one_line(tmp_path, capsys, content, message):
    from imagegen.cli.train import main

    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    assert _exit_code(main, ["--config", str(config)]) == 2
    assert message in _one_error_line(capsys)


def test_an_override_that_is_not_yaml_is_one_line(capsys):
    from imagegen.cli.train import main

    assert _exit_code(main, ["--config", str(TINY), "--set", "train.lr=[1, 2"]) == 2
    assert "train.lr=[1, 2" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "nope"], "device: unknown device 'nope'"),
        (["--device", "cuda:7"], "device: 'cuda:7' is not available"),
        (["--num-images", "100000"], "num_images_per_prompt"),
        (["--steps", "0"], "num_steps"),
    ],
)
def test_generate_cli_argument_mistakes_are_one_line(checkpoint, tmp_path, capsys, extra, message):
    from imagegen.cli.generate import main

    argv = ["a red circle", "--model", str(checkpoint), "--out", str(tmp_path / "x.png"), *extra]
    assert _exit_code(main, argv) == 2
    assert message in _one_error_line(capsys)


def test_an_unwritable_output_path_is_one_line(checkpoint, tmp_path, capsys):
    from imagegen.cli.generate import main

    (tmp_path / "file").write_text("not a folder")
    argv = ["a red circle", "--model", str(checkpoint), "--steps", "1", "--out", str(tmp_path / "file/x.png")]
    assert _exit_code(main, argv) == 2
    assert "file" in _one_error_line(capsys)


def test_a_prompt_with_an_invalid_byte_is_one_line(checkpoint, tmp_path, capsys):
    """Python turns an invalid UTF-8 byte in argv into a lone surrogate."""
    from imagegen.cli.generate import main

    argv = ["a red \udcff circle", "--model", str(checkpoint), "--out", str(tmp_path / "x.png")]
    assert _exit_code(main, argv) == 2
    assert "prompt:" in _one_error_line(capsys)


def test_the_library_names_the_device_argument(checkpoint):
    with pytest.raises(ValueError, match="device: unknown device 'nope'"):
        imagegen.load_pipeline(checkpoint, device="nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda' is not available"):
            imagegen.load_pipeline(checkpoint, device="cuda")
    if not torch.backends.mps.is_available():  # torch parses "mps" on every machine
        with pytest.raises(ValueError, match="device: 'mps' is not available"):
            imagegen.load_pipeline(checkpoint, device="mps")


def test_generate_cli_truncation_on_a_diffusion_model_is_ignored_with_a_warning(checkpoint, tmp_path, caplog):
    """`--truncation` is for a GAN; a diffusion model ignores it with a warning, as
    `imagegen.generate` does (the CLI passed it on, and the pipeline raised TypeError)."""
    from imagegen.cli.generate import main

    out = tmp_path / "x.png"
    argv = [
        "a red circle",
        "--model",
        str(checkpoint),
        "--out",
        str(out),
        "--steps",
        "1",
        "--truncation",
        "0.7",
    ]
    assert _exit_code(main, argv) == 0 and out.is_file()
    assert "truncation applies only to a GAN" in caplog.text


def _suite_images(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    return images


def test_eval_of_a_non_image_is_one_line(tmp_path, capsys):
    from imagegen.cli.eval import main

    images = _suite_images(tmp_path)
    for line in range(3):
        (images / f"{line:05d}_0.png").write_text("not an image")
    argv = ["--images", str(images), "--suite", "single", "--per-suite", "2", "--out", str(tmp_path / "e")]
    assert _exit_code(main, argv) == 2
    assert "is not a readable image" in _one_error_line(capsys)


def test_eval_refuses_a_symlink_out_of_the_images_folder(tmp_path, capsys):
    """Issue 15, item 10: `eval --images` followed symlinks out of the folder."""
    from imagegen.cli.eval import main

    images = _suite_images(tmp_path)
    (tmp_path / "elsewhere.png").write_bytes(b"")
    for line in range(3):
        (images / f"{line:05d}_0.png").symlink_to(tmp_path / "elsewhere.png")
    argv = ["--images", str(images), "--suite", "single", "--per-suite", "2", "--out", str(tmp_path / "e")]
    assert _exit_code(main, argv) == 2
    assert "leads out of" in _one_error_line(capsys)
