"""unCLIP §3.3 text diffs: an image's z_i rotated toward the direction a caption change makes in
CLIP space, decoded frame by frame; arguments checked before any network runs; the CLI flag."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import imagegen
from imagegen.cli.generate import main as generate_main
from imagegen.diffusion.embeddings import slerp


@pytest.fixture(scope="module")
def pipe(unclip_folder):
    return imagegen.load_pipeline(unclip_folder, device="cpu")


def _spy_decode(pipe, monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    real = pipe.decode

    def spy(image_embeds, prompts, generator, settings=None, negatives=None):
        seen.append(image_embeds.clone())
        return real(image_embeds, prompts, generator, settings, negatives)

    monkeypatch.setattr(pipe, "decode", spy)
    return seen


def test_the_frames_turn_from_the_images_z_i_toward_the_caption_change(pipe, monkeypatch):
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    seen = _spy_decode(pipe, monkeypatch)
    strip = pipe.text_diff(
        image, "a blue circle", base_prompt="a red circle", steps=4, num_steps=2, output_type="pt"
    )
    assert strip.shape == (4, 3, 16, 16) and len(seen) == 4
    z_i = pipe.image_embeds(image)
    z_t = pipe.text_embeds(["a blue circle", "a red circle"])
    z_d = F.normalize(z_t[:1] - z_t[1:], dim=-1)  # the caption change, as a direction
    assert torch.equal(seen[0], z_i)  # frame 0 is the image itself
    assert torch.allclose(seen[-1], slerp(z_i, z_d, 0.5), atol=1e-6)  # the paper stops half way
    toward = [float((z * z_d).sum()) for z in seen]
    away = [float((z * z_i).sum()) for z in seen]
    assert toward == sorted(toward) and away == sorted(away, reverse=True)
    assert all(abs(float(z.norm()) - 1) < 1e-5 for z in seen)


def test_one_seed_draws_every_frame(pipe):
    image = Image.new("RGB", (16, 16), (30, 30, 200))
    a = pipe.text_diff(
        image, "a green square", steps=2, num_steps=2, seed=7, max_weight=1.0, output_type="pt"
    )
    b = pipe.text_diff(
        image, "a green square", steps=2, num_steps=2, seed=7, max_weight=1.0, output_type="pt"
    )
    assert torch.equal(a, b)
    # with max_weight 1 the last frame decodes z_d itself, from the same noise as frame 0
    z_t = pipe.text_embeds(["a green square", ""])
    z_d = F.normalize(z_t[:1] - z_t[1:], dim=-1)
    settings = pipe.decoder_settings(num_steps=2, sampler="ddim")
    direct = pipe.decode(z_d, [""], torch.Generator().manual_seed(7), settings)
    assert torch.allclose(a[-1:], direct, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 1}, "steps: a text diff needs at least 2"),
        ({"max_weight": 0}, r"max_weight: .* \(0, 1\]"),
        ({"max_weight": 1.5}, r"max_weight: .* \(0, 1\]"),
        ({"max_weight": True}, r"max_weight"),
        ({"base_prompt": "a red circle"}, "prompt, base_prompt: .* the same CLIP text embedding"),
        ({"image": Image.new("RGB", (20, 20))}, r"image: an image is 20x20 px"),
        ({"image": [Image.new("RGB", (16, 16))] * 2}, "image: one image; got 2"),
        ({"stop_after": "sr64"}, "stop_after: unknown stage 'sr64'"),
    ],
)
def test_bad_text_diff_arguments_fail_before_the_decoder_runs(pipe, monkeypatch, kwargs, message):
    def no_network(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(pipe, "decode", no_network)
    call = {"image": Image.new("RGB", (16, 16)), "prompt": "a red circle", **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe.text_diff(**call)


def test_the_cli_draws_a_text_diff_strip_and_refuses_two_prompts(unclip_folder, tmp_path, capsys):
    source = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(source)
    out = tmp_path / "diff.png"
    args = ["a blue circle", "--model", str(unclip_folder), "--text-diff", str(source), "a red circle"]
    assert generate_main([*args, "--steps", "2", "--interpolation-steps", "3", "--out", str(out)]) == 0
    assert "(3 images)" in capsys.readouterr().out and Image.open(out).width > 3 * 16
    assert generate_main(["a", "b", *args[1:], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--text-diff: give one prompt" in err[0]
    assert generate_main(["a blue circle", "--model", "default", "--text-diff", str(source), "x"]) == 2
    assert "only an unCLIP folder" in capsys.readouterr().err
