"""The unCLIP flags of `python -m imagegen.generate` and `python -m imagegen.cascade unclip`."""

from __future__ import annotations

from PIL import Image

from imagegen.cascade.__main__ import main as cascade_main
from imagegen.cli.generate import main as generate_main


def test_generate_draws_variations_and_an_interpolation_strip(unclip_folder, tmp_path):
    source = tmp_path / "source.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(source)
    out = tmp_path / "variations.png"
    args = ["--model", str(unclip_folder), "--variations", str(source), "--num-images", "2", "--steps", "2"]
    assert generate_main([*args, "--out", str(out)]) == 0 and Image.open(out).width > 16
    strip = tmp_path / "strip.png"
    args = ["--model", str(unclip_folder), "--interpolate", str(source), str(source), "--steps", "2"]
    assert generate_main([*args, "--interpolation-steps", "3", "--out", str(strip)]) == 0 and strip.is_file()


def test_unclip_flags_fail_in_one_line_on_other_models_and_bad_images(unclip_folder, tmp_path, capsys):
    wrong = tmp_path / "wrong.png"
    Image.new("RGB", (20, 20)).save(wrong)
    assert generate_main(["a red circle", "--model", "default", "--image-embed-source", "text"]) == 2
    assert "only an unCLIP folder" in capsys.readouterr().err
    assert generate_main(["--model", str(unclip_folder), "--variations", str(wrong), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "20x20" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert generate_main(["--model", str(unclip_folder)]) == 2
    assert "prompts" in capsys.readouterr().err


def test_assembling_from_the_wrong_kind_of_run_is_a_one_line_error(unclip_folder, tmp_path, capsys):
    decoder = unclip_folder / "decoder"  # not a run: no checkpoints
    code = cascade_main(
        ["unclip", "--prior", str(decoder), "--decoder", str(decoder), "--out", str(tmp_path / "u")]
    )
    assert code == 2 and capsys.readouterr().err.startswith("error: ")
