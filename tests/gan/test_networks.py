"""DF-GAN generator and discriminator: shapes per preset, identity init, errors, gradients, saving."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from imagegen.config import GANConfig, config_from_dict
from imagegen.gan.networks import (
    LEAK,
    Discriminator,
    FusionBlock,
    Generator,
    TextAffine,
    count_parameters,
)
from imagegen.presets import GAN_PRESETS

TEXT_DIM = 384  # MiniLM's pooled width, the one preset counts are quoted for
# (G, D with the concat head, D with the projection head) parameter counts in millions, as written
# in the comments of presets.GAN_PRESETS and docs/gan.md
DOCUMENTED_MILLIONS = {
    "gan-tiny16": (0.15, 0.16, 0.06),
    "gan-tiny32": (0.95, 0.77, 0.53),
    "gan32": (4.18, 3.81, 3.17),
    "gan64": (6.39, 3.52, 3.24),
    "gan128": (8.59, 5.16, 4.88),
}


def tiny_config(**overrides) -> GANConfig:
    return config_from_dict({"preset": "gan-tiny16", **overrides}, GANConfig)


def perturb_(module: torch.nn.Module, scale: float = 0.1) -> None:
    """Add noise to every parameter, so zero-initialised gains and last layers no longer block gradients."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


@pytest.mark.parametrize("head", ["concat", "projection"])
@pytest.mark.parametrize("name", sorted(GAN_PRESETS))
def test_preset_shapes_and_parameter_counts_on_meta(name, head):
    cfg = config_from_dict({"preset": name, "disc_head": head}, GANConfig)
    with torch.device("meta"):
        generator = Generator.from_config(cfg, TEXT_DIM)
        discriminator = Discriminator.from_config(cfg, TEXT_DIM)
        z, text = torch.empty(3, cfg.z_dim), torch.empty(3, TEXT_DIM)
        images = generator(z, text)
        logits = discriminator(images, text)
        logits_pairs = discriminator(images, torch.stack([text, text]))
    assert images.shape == (3, 3, cfg.image_size, cfg.image_size)
    assert logits.shape == (3,)
    assert logits_pairs.shape == (2, 3)
    assert discriminator.features(images).shape[-2:] == (4, 4)
    millions = (round(count_parameters(generator) / 1e6, 2), round(count_parameters(discriminator) / 1e6, 2))
    generator_millions, *discriminator_millions = DOCUMENTED_MILLIONS[name]
    assert millions == (generator_millions, discriminator_millions[head == "projection"])


def test_required_presets_exist_and_tiny32_fits_a_cpu_run():
    assert {"gan32", "gan64", "gan128", "gan-tiny16", "gan-tiny32"} <= set(GAN_PRESETS)
    assert {GAN_PRESETS[name]["image_size"] for name in ("gan32", "gan64", "gan128")} == {32, 64, 128}
    assert 0.3 <= sum(DOCUMENTED_MILLIONS["gan-tiny32"][:2]) <= 2.0


@pytest.mark.parametrize("image_size", [4, 12, 48, 0, -8])
def test_bad_image_size_names_the_argument(image_size):
    with pytest.raises(ValueError, match="image_size"):
        Generator(8, 4, [8, 8], image_size)
    with pytest.raises(ValueError, match="image_size"):
        Discriminator(4, [8, 8], image_size)


def test_channel_list_not_matching_image_size_names_the_argument():
    cfg = tiny_config()  # 16 px: three resolutions 4, 8, 16
    with pytest.raises(ValueError, match="gen_channels"):
        Generator.from_config(cfg, 4, image_size=32)
    with pytest.raises(ValueError, match="disc_channels"):
        Discriminator.from_config(cfg, 4, image_size=8)


def test_affine_and_fusion_block_start_as_identity_whatever_the_text():
    affine, fusion = TextAffine(cond_dim=6, channels=5), FusionBlock(cond_dim=6, channels=5)
    x = torch.randn(2, 5, 4, 4)
    for cond in (torch.randn(2, 6), 10 * torch.randn(2, 6)):
        torch.testing.assert_close(affine(x, cond), x)
        torch.testing.assert_close(fusion(x, cond), F.leaky_relu(F.leaky_relu(x, LEAK), LEAK))
    perturb_(fusion)
    assert not torch.allclose(fusion(x, torch.zeros(2, 6)), fusion(x, torch.ones(2, 6)))


def test_generator_output_range_and_text_ignored_at_init_used_after_perturbation():
    generator = Generator.from_config(tiny_config(), TEXT_DIM)
    z = torch.randn(4, generator.z_dim)
    text_a, text_b = torch.randn(4, TEXT_DIM), torch.randn(4, TEXT_DIM)
    images = generator(z, text_a)
    assert images.abs().max() <= 1
    torch.testing.assert_close(images, generator(z, text_b))  # identity fusion: text has no effect yet
    perturb_(generator)
    assert not torch.allclose(generator(z, text_a), generator(z, text_b))


def test_head_scores_several_captions_from_one_feature_pass():
    discriminator = Discriminator.from_config(tiny_config(), TEXT_DIM)
    perturb_(discriminator)
    images, text_a, text_b = torch.randn(3, 3, 16, 16), torch.randn(3, TEXT_DIM), torch.randn(3, TEXT_DIM)
    pairs = discriminator(images, torch.stack([text_a, text_b]))
    one_at_a_time = torch.stack([discriminator(images, text_a), discriminator(images, text_b)])
    torch.testing.assert_close(pairs, one_at_a_time)
    assert not torch.allclose(pairs[0], pairs[1])  # the head reads the text


def test_gradient_reaches_every_parameter():
    cfg = tiny_config()
    generator, discriminator = Generator.from_config(cfg, TEXT_DIM), Discriminator.from_config(cfg, TEXT_DIM)
    perturb_(generator)
    perturb_(discriminator)
    text = torch.randn(2, TEXT_DIM)
    discriminator(generator(torch.randn(2, cfg.z_dim), text), text).sum().backward()
    for name, parameter in [*generator.named_parameters(), *discriminator.named_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        assert torch.isfinite(parameter.grad).all(), name


def test_safetensors_round_trip_through_config(tmp_path):
    cfg = tiny_config()
    for network in (Generator.from_config(cfg, TEXT_DIM), Discriminator.from_config(cfg, TEXT_DIM)):
        perturb_(network)
        save_file(network.state_dict(), tmp_path / "weights.safetensors")
        rebuilt = type(network)(**network.config)
        rebuilt.load_state_dict(load_file(tmp_path / "weights.safetensors"))
        if isinstance(network, Generator):
            inputs = (torch.randn(2, cfg.z_dim), torch.randn(2, TEXT_DIM))
        else:
            inputs = (torch.randn(2, 3, 16, 16), torch.randn(2, TEXT_DIM))
        torch.testing.assert_close(rebuilt(*inputs), network(*inputs))


def test_linear_output_is_raw_in_training_and_clamped_in_eval():
    """gan.output=linear: D sees (and can push back) values outside [-1, 1]; samples stay in range;
    the mode survives a save / rebuild; tanh stays bounded in both modes."""
    generator = Generator.from_config(tiny_config(output="linear"), TEXT_DIM)
    with torch.no_grad():
        generator.to_rgb.bias.fill_(3.0)  # drive every pixel far above 1
    z, text = torch.randn(2, generator.z_dim), torch.randn(2, TEXT_DIM)
    raw = generator.train()(z, text)
    assert raw.max() > 1.5
    raw.sum().backward()
    assert generator.to_rgb.bias.grad.abs().min() > 0  # no saturation: the gradient still flows
    clamped = generator.eval()(z, text)
    torch.testing.assert_close(clamped, raw.detach().clamp(-1, 1))
    rebuilt = Generator(**generator.config).eval()
    rebuilt.load_state_dict(generator.state_dict())
    torch.testing.assert_close(rebuilt(z, text), clamped)

    squashed = Generator.from_config(tiny_config(), TEXT_DIM)
    assert "output" not in squashed.config  # a tanh network.json is what it was before the option
    with torch.no_grad():
        squashed.to_rgb.bias.fill_(3.0)
    assert squashed.train()(z, text).abs().max() <= 1


def test_unknown_output_names_the_argument():
    with pytest.raises(ValueError, match="gan.output"):
        Generator.from_config(tiny_config(output="sigmoid"), TEXT_DIM)


def test_projection_head_is_w_dot_h_plus_projected_caption_dot_h():
    """logit = w . h + b + (V e) . h with h = sum over 4x4 of LeakyReLU(features) (Miyato & Koyama
    2018), computed here by hand; several captions per image from one feature pass."""
    discriminator = Discriminator.from_config(tiny_config(disc_head="projection"), TEXT_DIM)
    perturb_(discriminator)
    images, texts = torch.randn(3, 3, 16, 16), torch.randn(2, 3, TEXT_DIM)
    h = F.leaky_relu(discriminator.features(images), LEAK).sum(dim=(2, 3))  # [3, C]
    w, b = discriminator.unconditional.weight[0], discriminator.unconditional.bias[0]
    V = discriminator.text_projection.weight  # [C, T]
    expected = torch.stack([h @ w + b + ((texts[n] @ V.T) * h).sum(dim=1) for n in range(2)])
    torch.testing.assert_close(discriminator(images, texts), expected)
    torch.testing.assert_close(discriminator(images, texts[1]), expected[1])


def test_projection_head_starts_text_blind_and_survives_a_rebuild():
    discriminator = Discriminator.from_config(tiny_config(disc_head="projection"), TEXT_DIM)
    images = torch.randn(2, 3, 16, 16)
    text_a, text_b = torch.randn(2, TEXT_DIM), torch.randn(2, TEXT_DIM)
    # V = 0 at initialisation: no huge text gradient for MA-GP's 6th power to blow up
    torch.testing.assert_close(discriminator(images, text_a), discriminator(images, text_b))
    (grad_text,) = torch.autograd.grad(discriminator(images, text_a.requires_grad_()).sum(), text_a)
    assert grad_text.abs().max() == 0
    perturb_(discriminator)
    assert not torch.allclose(discriminator(images, text_a), discriminator(images, text_b))
    assert discriminator.config["head"] == "projection"
    rebuilt = Discriminator(**discriminator.config)
    rebuilt.load_state_dict(discriminator.state_dict())
    torch.testing.assert_close(rebuilt(images, text_a), discriminator(images, text_a))
    assert "head" not in Discriminator.from_config(tiny_config(), TEXT_DIM).config  # concat unchanged


def test_unknown_head_names_the_argument():
    with pytest.raises(ValueError, match="gan.disc_head"):
        Discriminator.from_config(tiny_config(disc_head="attention"), TEXT_DIM)
