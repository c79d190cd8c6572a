"""unCLIP's upsamplers: super-resolution stages after the decoder, in the unCLIP folder, fed the
decoder's image and the caption; stop_after; clear errors at assembly and load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import imagegen
from imagegen.cascade.unclip import assemble_unclip, read_unclip
from imagegen.config import load_config, stage_run_config
from imagegen.pipelines import unclip as unclip_module
from imagegen.training.trainer import Trainer
from imagegen.utils.images import tensor_to_pil

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts(unclip_folder) -> tuple[str, str]:
    """The prior and decoder checkpoints the shared unCLIP folder was assembled from."""
    manifest = json.loads((unclip_folder / "unclip.json").read_text())
    return manifest["prior"]["source"], manifest["decoder"]["source"]


@pytest.fixture(scope="module")
def sr_runs(tmp_path_factory) -> dict[str, Path]:
    """Two- or three-step runs: a joint base16 -> sr32 cascade, its sr32 alone, an sr32 whose
    captions go through another text-encoder setting (max_length 12) than the decoder's, and a
    text-to-image base16."""
    root = tmp_path_factory.mktemp("unclip-sr")
    sets = [f"train.output_dir={root / 'runs'}", f"text.cache_dir={root / 'cache'}", "train.max_steps=3"]
    joint = load_config(REPO / "configs/tiny-cascade-test.yaml", [*sets, "train.run_name=joint"])
    runs = {"joint": Trainer(joint).fit().run_dir}
    base = load_config(
        REPO / "configs/tiny-test.yaml", [*sets, "train.run_name=base", "train.max_steps=2", "stage=base16"]
    )
    runs["base"] = Trainer(base).fit().run_dir
    for name, extra in (("sr32", []), ("sr32-l12", ["text.max_length=12"])):
        cfg = load_config(REPO / "configs/tiny-cascade-test.yaml", [*sets, f"train.run_name={name}", *extra])
        sr = stage_run_config(cfg, cfg.cascade.stages[1])
        sr.superres.random_crop = 16
        runs[name] = Trainer(sr).fit().run_dir
    return runs


@pytest.fixture(scope="module")
def sr_folder(parts, sr_runs, tmp_path_factory) -> Path:
    return assemble_unclip(
        *parts, tmp_path_factory.mktemp("unclip-sr-folder") / "unclip", upsamplers=[sr_runs["sr32"]]
    )


@pytest.fixture(scope="module")
def sr_pipe(sr_folder):
    return imagegen.load_pipeline(sr_folder, device="cpu")


def _recording(monkeypatch) -> list[dict]:
    """Record what every upsampler call is given (and let it run)."""
    calls: list[dict] = []
    real = unclip_module.sample_stage

    def spy(model, diffusion, settings, text, null, resolution, generator, lowres=None):
        calls.append({"lowres": lowres.clone(), "tokens": text.tokens.clone(), "resolution": resolution})
        return real(model, diffusion, settings, text, null, resolution, generator, lowres=lowres)

    monkeypatch.setattr(unclip_module, "sample_stage", spy)
    return calls


def test_the_folder_lists_the_upsamplers_and_copies_their_weights(sr_folder):
    manifest = read_unclip(sr_folder)
    assert [(row["name"], row["resolution"], row["lowres_size"]) for row in manifest["upsamplers"]] == [
        ("sr32", 32, 16)
    ]
    assert manifest["upsamplers"][0]["aug_level"] == 0.2  # the stage's sampling defaults travel with it
    model = sr_folder / "upsamplers" / "sr32" / "model"
    assert (model / "config.json").is_file() and not list(model.glob("ema_shadow*"))


def test_an_upsampler_takes_the_decoders_image_and_the_caption(sr_pipe, monkeypatch):
    decoded = sr_pipe("a red circle", seed=3, stop_after="decoder", output_type="pt")  # [1, 3, 16, 16]
    calls = _recording(monkeypatch)
    full = sr_pipe("a red circle", seed=3, output_type="pt")
    assert decoded.shape == (1, 3, 16, 16) and full.shape == (1, 3, 32, 32)
    assert len(calls) == 1 and calls[0]["resolution"] == 32
    assert torch.equal(calls[0]["lowres"].cpu(), decoded)  # the decoder's image, as stop_after returns it
    assert torch.equal(calls[0]["tokens"], sr_pipe.encoder.encode(["a red circle"]).tokens)
    assert not calls[0]["tokens"].equal(sr_pipe.encoder.encode([""]).tokens)


def test_the_upsampler_seed_is_its_own(sr_pipe):
    a = sr_pipe("a blue square", seed=5, output_type="pt")
    assert torch.equal(a, sr_pipe("a blue square", seed=5, output_type="pt"))
    # the same decoder image under another upsampler noise: seed 5 and 6 differ already at the decoder,
    # so compare two upsamplings of one decoded image through the pipeline's own generators
    decoded = sr_pipe("a blue square", seed=5, stop_after="decoder", output_type="pt")
    ups = sr_pipe.upsamplers_until(None)
    first = sr_pipe.upsample(decoded, ["a blue square"], ups, sr_pipe.upsampler_generators(5, ups))
    second = sr_pipe.upsample(decoded, ["a blue square"], ups, sr_pipe.upsampler_generators(6, ups))
    assert torch.equal(first.cpu(), a) and not torch.equal(first, second)


def test_variations_and_interpolations_upsample_with_the_null_caption(sr_pipe, monkeypatch):
    small = tensor_to_pil(sr_pipe("a red circle", seed=1, stop_after="decoder", output_type="pt"))[0]
    calls = _recording(monkeypatch)
    images = sr_pipe.variations(small, num_images_per_image=2, seed=2)
    assert [image.size for image in images] == [(32, 32), (32, 32)]
    null = sr_pipe.encoder.encode(["", ""]).tokens
    assert torch.equal(calls[-1]["tokens"], null)
    # a source at the upsampler's side is taken too (the CLIP resizes it)
    assert len(sr_pipe.variations(images[0], num_images_per_image=1, stop_after="decoder")) == 1
    calls.clear()
    strip = sr_pipe.interpolate(small, images[0].resize((16, 16)), steps=2, output_type="pt")
    assert strip.shape == (2, 3, 32, 32) and len(calls) == 2
    assert all(torch.equal(call["tokens"], sr_pipe.encoder.encode([""]).tokens) for call in calls)
    calls.clear()
    edit = sr_pipe.text_diff(small, "a blue circle", base_prompt="a red circle", steps=2, output_type="pt")
    assert edit.shape == (2, 3, 32, 32) and len(calls) == 2
    assert torch.equal(calls[0]["tokens"], sr_pipe.encoder.encode([""]).tokens)


def test_stop_after_names_a_stage(sr_pipe, unclip_folder):
    with pytest.raises(ValueError, match=r"stop_after: unknown stage 'sr64'; stages: \['decoder', 'sr32'\]"):
        sr_pipe("a red circle", stop_after="sr64")
    plain = imagegen.load_pipeline(unclip_folder, device="cpu")
    assert plain("a red circle", stop_after="decoder", output_type="pt").shape[-1] == 16
    with pytest.raises(ValueError, match="stop_after"):
        plain.variations(torch.zeros(3, 16, 16), stop_after="sr32")


def test_a_joint_cascade_run_gives_its_super_resolution_stages(parts, sr_runs, tmp_path):
    folder = assemble_unclip(*parts, tmp_path / "u", upsamplers=[sr_runs["joint"]])
    assert [row["name"] for row in read_unclip(folder)["upsamplers"]] == ["sr32"]


@pytest.mark.parametrize(
    "runs, message",
    [
        (["sr32", "sr32"], r"upsampler: stage names must be unique; repeated: \['sr32'\]"),
        (["base"], r"upsampler: .* holds no super-resolution stage \(only \['base16'\]\)"),
        (["prior"], r"upsampler: .* a 'prior' run is not a diffusion stage"),
        (
            ["sr32-l12"],
            r"upsampler: stages were trained with different text encoders: 'decoder' .*max_length",
        ),
    ],
)
def test_bad_upsamplers_fail_before_anything_is_written(parts, sr_runs, tmp_path, runs, message):
    upsamplers = [parts[0] if run == "prior" else sr_runs[run] for run in runs]
    with pytest.raises(ValueError, match=message):
        assemble_unclip(*parts, tmp_path / "u", upsamplers=upsamplers)
    assert not (tmp_path / "u").exists() and not list(tmp_path.glob(".u*"))


def test_a_folder_with_a_broken_upsampler_fails_to_load_naming_it(sr_folder, tmp_path):
    missing = shutil.copytree(sr_folder, tmp_path / "missing")
    shutil.rmtree(missing / "upsamplers" / "sr32" / "model")
    with pytest.raises(FileNotFoundError, match=r"upsamplers/sr32/model/config.json is missing"):
        imagegen.load_pipeline(missing, device="cpu")
    wrong = shutil.copytree(sr_folder, tmp_path / "wrong")
    manifest = json.loads((wrong / "unclip.json").read_text())
    manifest["upsamplers"][0]["lowres_size"] = 8  # the decoder draws 16 px
    (wrong / "unclip.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"upsampler 'sr32' takes 8 px images but the decoder draws 16 px"):
        imagegen.load_pipeline(wrong, device="cpu")


def _edited(folder: Path, to: Path, edit) -> Path:
    copy = shutil.copytree(folder, to)
    manifest = json.loads((copy / "unclip.json").read_text())
    edit(manifest)
    (copy / "unclip.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(upsamplers={"sr32": 1}), r"'upsamplers' must be a list"),
        (lambda m: m.update(upsamplers=["sr32"]), r"upsamplers\[0\] must be an object"),
        (
            lambda m: m["upsamplers"][0].pop("aug_level"),
            r"upsamplers\[0\] \(sr32\): missing keys \['aug_level'\]",
        ),
        (lambda m: m["upsamplers"][0].update(name="../sr32"), r"stage name '../sr32' must be a folder name"),
        (
            lambda m: m["upsamplers"][0].update(name="decoder"),
            r"stage names must be unique; repeated: \['decoder'\]",
        ),
        (lambda m: m["upsamplers"][0].update(sampler="bogus"), r"upsamplers\[0\] \(sr32\)\.sampler"),
        (lambda m: m["upsamplers"][0].update(num_steps=0), r"upsamplers\[0\] \(sr32\)\.num_steps"),
        (lambda m: m["upsamplers"][0].update(aug_level=5), r"upsamplers\[0\] \(sr32\)\.aug_level"),
    ],
)
def test_a_hand_edited_upsampler_row_is_a_clear_error_at_load(
    sr_folder, tmp_path, monkeypatch, edit, message
):
    folder = _edited(sr_folder, tmp_path / "edited", edit)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the manifest was checked")

    monkeypatch.setattr(unclip_module.factory, "load_unet", no_weights)
    monkeypatch.setattr(unclip_module.factory, "load_prior", no_weights)
    with pytest.raises(ValueError, match=message):
        unclip_module.UnclipPipeline(folder, device="cpu")


def test_the_cli_refuses_flags_an_unclip_call_would_drop(sr_folder, tmp_path, capsys):
    from imagegen.cli.generate import main as generate_main

    source = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(source)
    cases = [
        (["a red circle", "--lowres-image", str(source)], "--lowres-image"),
        (
            ["--variations", str(source), "--negative-prompt", "blue"],
            "--negative-prompt: not used with --variations",
        ),
        (
            ["--interpolate", str(source), str(source), "--num-images", "3"],
            "--num-images: not used with --interpolate",
        ),
        (
            ["a", "--text-diff", str(source), "b", "--image-embed-source", "text"],
            "--image-embed-source: not used",
        ),
    ]
    for argv, message in cases:
        assert generate_main([*argv, "--model", str(sr_folder)]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_the_cli_assembles_upsamplers_and_generate_stops_after_the_decoder(parts, sr_runs, tmp_path, capsys):
    from imagegen.cascade.__main__ import main as cascade_main
    from imagegen.cli.generate import main as generate_main

    out = tmp_path / "u"
    argv = ["unclip", "--prior", parts[0], "--decoder", parts[1], "--upsampler", str(sr_runs["sr32"])]
    assert cascade_main([*argv, "--out", str(out)]) == 0
    assert "clip + prior + decoder + sr32" in capsys.readouterr().out
    for name, extra, side in (("full.png", [], 32), ("small.png", ["--stop-after", "decoder"], 16)):
        argv = ["a red circle", "--model", str(out), "--steps", "2", "--out", str(tmp_path / name), *extra]
        assert generate_main(argv) == 0
        assert Image.open(tmp_path / name).size == (side, side)
    assert generate_main(["a red circle", "--model", str(out), "--stop-after", "sr64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stop_after: unknown stage 'sr64'" in err[0]
