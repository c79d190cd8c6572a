"""unCLIP's decoder: conditioned on z_i, it draws the render z_i came from; variations keep its
attributes; interpolation; the U-Net's image-embedding inputs; exact resume; clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import imagegen
from imagegen.cascade.unclip import assemble_unclip
from imagegen.config import load_config
from imagegen.data.shapes import render_scene
from imagegen.diffusion.embeddings import slerp
from imagegen.evaluation.scorer import single_object_accuracy
from imagegen.models import EfficientUNet
from imagegen.training.trainer import Trainer
from imagegen.utils.images import from_uint8, tensor_to_pil

REPO = Path(__file__).resolve().parents[2]

COLORS_SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star")]


def _spec(color: str, shape: str) -> dict:
    return {
        "kind": "single",
        "background": "white",
        "relation": None,
        "objects": [{"shape": shape, "color": color, "size": "large", "count": 1}],
        "instances": [{"shape": shape, "color": color, "size": "large", "box": [0.2, 0.2, 0.8, 0.8]}],
    }


class FourScenes(torch.utils.data.Dataset):
    """Four large objects on white, always the same four images (at any resolution)."""

    def __init__(self, resolution: int):
        self.specs = [_spec(color, shape) for color, shape in COLORS_SHAPES]
        self.captions = [f"a {color} {shape}" for color, shape in COLORS_SHAPES]
        self.images = [from_uint8(render_scene(spec, resolution)) for spec in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def caption(self, index: int) -> str:
        return self.captions[index]

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "caption": self.captions[index], "spec": self.specs[index]}


@pytest.fixture(scope="module")
def overfit_unclip(tmp_path_factory):
    """An unCLIP folder whose CLIP (30 steps) and decoder (1000 steps) saw only the four FourScenes
    images, at 16 px: the decoder given one's z_i should draw it, colour and shape.

    The recipe is the issue-18 one (v-loss unweighted: min-SNR weighting drew shapeless blobs) at
    the tiny16 U-Net's own side: at 32 px the same U-Net drew 7 of 12 shapes after 1000 steps and
    no better after 1500 (the circle came out a polygon, the star a scribble), at 16 px 11 to 12."""
    from imagegen.training import trainer as trainer_module

    work = tmp_path_factory.mktemp("overfit")
    # fp32 everywhere: the overfit must not depend on whether this host's CPU picks bf16 for "auto"
    common = [
        f"text.cache_dir={work / 'cache'}",
        f"train.output_dir={work / 'runs'}",
        "train.batch_size=4",
        'train.mixed_precision="no"',
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "build_train_dataset", lambda cfg: FourScenes(cfg.data.resolution))
        clip_cfg = load_config(REPO / "configs/tiny-clip-test.yaml", [*common, "train.max_steps=30"])
        clip = Trainer(clip_cfg).fit().checkpoint / "ema" / "clip"
        decoder_cfg = load_config(
            REPO / "configs/tiny-unclip-decoder-test.yaml",
            [
                *common,
                f"unclip.clip={clip}",
                "diffusion.loss_weighting=none",
                "train.max_steps=1000",
                "train.lr=2e-3",
                "train.warmup_steps=20",
                "train.lr_schedule=constant",
                "train.ema_max_decay=0.99",
                "train.checkpoint_every=1000",
                "train.sample_every=0",
                "sample.num_steps=25",
                "sample.sampler=ddim",
                "sample.guidance_scale=3.0",
            ],
        )
        decoder = Trainer(decoder_cfg).fit()
        prior_cfg = load_config(
            REPO / "configs/tiny-unclip-prior-test.yaml",
            [*common, f"unclip.clip={clip}", f"text.name_or_path={clip}", "train.max_steps=2"],
        )
        prior = Trainer(prior_cfg).fit()
    folder = assemble_unclip(prior.run_dir, decoder.run_dir, work / "unclip")
    data = FourScenes(16)
    return imagegen.load_pipeline(folder, device="cpu"), [data[i] for i in range(len(data))]


def test_the_decoder_given_a_renders_z_i_draws_its_colour_and_shape(overfit_unclip):
    pipe, items = overfit_unclip
    z_i = pipe.image_embeds(torch.stack([item["image"] for item in items]))  # [4, E]
    judged = []
    for seed in range(3):
        drawn = pipe.decode(z_i, [""] * len(items), torch.Generator().manual_seed(seed))  # z_i alone
        judged += [
            single_object_accuracy(image, item["spec"]) for image, item in zip(tensor_to_pil(drawn), items)
        ]
    colours, shapes = sum(color for color, _ in judged), sum(shape for _, shape in judged)
    # 12 draws (4 scenes x 3 seeds), scored by the Shapes scorer; chance is 1 in 8 for the colour and
    # 1 in 6 for the shape. Measured: 12 / 12 colours, 11 / 12 shapes (the 400-step 32 px overfit
    # this replaced drew coloured blobs: 11 / 12 colours, 1 / 12 shapes)
    assert colours >= 11 and shapes >= 9, judged


def test_variations_keep_the_sources_attributes_and_differ_in_pixels(overfit_unclip):
    pipe, items = overfit_unclip
    source = items[0]
    variations = pipe.variations(tensor_to_pil(source["image"][None])[0], num_images_per_image=3, seed=1)
    assert len(variations) == 3
    assert all(single_object_accuracy(image, source["spec"])[0] for image in variations)  # its colour
    pixels = [torch.tensor(list(image.getdata()), dtype=torch.float32) for image in variations]
    assert not torch.equal(pixels[0], pixels[1]) and not torch.equal(pixels[1], pixels[2])


def test_interpolation_runs_from_one_end_to_the_other_through_the_slerp_midpoint(overfit_unclip):
    pipe, items = overfit_unclip
    a, b = items[0]["image"], items[1]["image"]
    strip = pipe.interpolate(a, b, steps=3, seed=4, output_type="pt")  # [3, 3, 16, 16]
    z_a, z_b = pipe.image_embeds(a), pipe.image_embeds(b)
    settings = pipe.decoder_settings(sampler="ddim")
    ends = [pipe.decode(z, [""], torch.Generator().manual_seed(4), settings) for z in (z_a, z_b)]
    assert torch.equal(strip[0], ends[0][0]) and torch.equal(strip[-1], ends[1][0])  # one x_T for all
    mid = pipe.decode(slerp(z_a, z_b, 0.5), [""], torch.Generator().manual_seed(4), settings)
    assert torch.equal(strip[1], mid[0])
    between = slerp(z_a, z_b, 0.5)
    assert float(between @ z_a.T) > float(z_b @ z_a.T) and float(between @ z_b.T) > float(z_a @ z_b.T)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda pipe, image: pipe.variations(image.resize((20, 20))), "images"),
        (lambda pipe, image: pipe.variations(image.convert("F")), "images"),
        (lambda pipe, image: pipe.variations(torch.zeros(2, 3, 16, 16) + 3), "images"),
        (lambda pipe, image: pipe.variations(torch.zeros(2, 1, 16, 16)), "images"),
        (lambda pipe, image: pipe.variations([]), "images"),
        (lambda pipe, image: pipe.variations(image, num_images_per_image=0), "num_images_per_image"),
        (lambda pipe, image: pipe.interpolate(image, image, steps=1), "steps"),
        (lambda pipe, image: pipe.interpolate(image, image.resize((8, 8))), "image_b"),
        (lambda pipe, image: pipe("a red circle", image_embed_source="clip"), "image_embed_source"),
    ],
)
def test_bad_images_and_arguments_fail_before_any_network_runs(overfit_unclip, monkeypatch, call, argument):
    pipe, items = overfit_unclip

    def no_compute(*args, **kwargs):
        raise AssertionError("a network ran before the arguments were checked")

    monkeypatch.setattr("imagegen.pipelines.unclip.sample_decoder", no_compute)
    monkeypatch.setattr("imagegen.pipelines.unclip.sample_image_embeds", no_compute)
    image = tensor_to_pil(items[0]["image"][None])[0]
    with pytest.raises(ValueError, match=argument):
        call(pipe, image)


def test_image_embed_tokens_change_the_output_and_are_required_exactly_when_built_for():
    unet = EfficientUNet(
        image_size=16, channels=[16, 32], num_res_blocks=[1, 1], self_attn=[False, True],
        cross_attn=[False, True], head_dim=16, text_dim=8, cond_dim=16, image_embed_dim=12,
    )  # fmt: skip
    for parameter in unet.parameters():  # zero-initialised output and FiLM layers hide conditioning
        if not parameter.any():
            torch.nn.init.normal_(parameter, std=0.1)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    text = {"text_tokens": torch.randn(2, 5, 8), "text_mask": torch.ones(2, 5, dtype=torch.bool)}
    text["text_pooled"] = torch.randn(2, 8)
    z = torch.nn.functional.normalize(torch.randn(2, 12), dim=-1)
    out = unet(x, t, **text, image_embed=z)
    assert not torch.allclose(out, unet(x, t, **text, image_embed=torch.zeros(2, 12)))
    with pytest.raises(ValueError, match="image_embed"):
        unet(x, t, **text)
    with pytest.raises(ValueError, match="image_embed"):
        unet(x, t, **text, image_embed=torch.zeros(2, 7))
    plain = EfficientUNet(image_size=16, channels=[16, 32], num_res_blocks=[1, 1], text_dim=8, cond_dim=16)
    with pytest.raises(ValueError, match="image_embed_dim=0"):
        plain(x, t, **text, image_embed=z)


def _decoder_weights(checkpoint):
    state = load_file(str(checkpoint / "state" / "model.safetensors"))
    shadow = load_file(str(checkpoint / "ema" / "model" / "ema_shadow.safetensors"))
    return {**state, **{f"ema.{k}": v for k, v in shadow.items()}}


def test_decoder_training_resumes_exactly(unclip_config):
    straight = Trainer(unclip_config("decoder", "train.run_name=decoder-straight")).fit()
    half = Trainer(unclip_config("decoder", "train.run_name=decoder-halves"))
    half.fit(stop_at=3)
    resumed = Trainer(unclip_config("decoder", "train.run_name=decoder-halves"), resume="latest").fit()
    a, b = _decoder_weights(straight.checkpoint), _decoder_weights(resumed.checkpoint)
    assert straight.step == resumed.step == 6 and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert (straight.checkpoint.parent.parent / "samples").is_dir()  # the preview decodes z_t as z_i


def test_a_decoder_built_for_another_width_than_its_clip_fails_before_training(unclip_config):
    with pytest.raises(ValueError, match="model.image_embed_dim"):
        Trainer(unclip_config("decoder", "model.image_embed_dim=48", "train.run_name=wide")).setup()
    with pytest.raises(ValueError, match="model.image_embed_dim"):
        unclip_config("decoder", "model.image_embed_dim=0")


def test_a_prior_and_decoder_of_different_clips_cannot_be_assembled(unclip_config, unclip_folder, tmp_path):
    """Same architecture, other weights (fingerprint differs): assembly refuses, writing nothing."""
    other_clip = tmp_path / "other-clip"
    shutil.copytree(unclip_folder / "clip", other_clip)
    weights = load_file(str(other_clip / "model.safetensors"))
    save_file({k: v + 0.01 for k, v in weights.items()}, str(other_clip / "model.safetensors"))
    base = unclip_config("decoder")
    cfg = load_config(
        REPO / "configs/tiny-unclip-decoder-test.yaml",
        [
            f"unclip.clip={other_clip}",
            f"text.cache_dir={tmp_path / 'cache'}",
            f"train.output_dir={base.train.output_dir}",
            "train.max_steps=1",
            "train.sample_every=0",
            "train.run_name=other-clip-decoder",
        ],
    )
    decoder = Trainer(cfg).fit()
    manifest = json.loads((unclip_folder / "unclip.json").read_text())
    with pytest.raises(ValueError, match="different CLIPs"):
        assemble_unclip(manifest["prior"]["source"], decoder.run_dir, tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
