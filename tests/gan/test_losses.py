"""GAN losses with phases: documented values on known logits, mismatch negatives, phase plumbing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from imagegen.config import GANConfig, config_from_dict
from imagegen.gan.losses import GANLoss, caption_contrastive, mismatched_text
from imagegen.gan.networks import Discriminator, Generator

LOG2 = math.log(2.0)
ALL_VALID = torch.ones(4, dtype=torch.bool)


def loss_fn(**overrides) -> GANLoss:
    return GANLoss(GANConfig(**overrides))


def full(value: float) -> torch.Tensor:
    return torch.full((4,), value)


def test_nonsaturating_zero_logits_cost_log2_per_term():
    loss = loss_fn(loss="nonsaturating", mismatch_weight=1.0)
    total, terms = loss.d_objective(full(0.0), full(0.0), full(0.0), ALL_VALID)
    for name in ("D_real", "D_fake", "D_mismatch"):
        assert terms[name].item() == pytest.approx(LOG2)
    assert total.item() == pytest.approx(LOG2 + (LOG2 + LOG2) / 2)
    assert loss.g_objective(full(0.0)).item() == pytest.approx(LOG2)


def test_nonsaturating_equals_binary_cross_entropy_on_random_logits():
    loss = loss_fn(loss="nonsaturating", mismatch_weight=0.0)
    real, fake = torch.randn(16) * 3, torch.randn(16) * 3
    total, _ = loss.d_objective(real, fake, torch.zeros(16), torch.ones(16, dtype=torch.bool))
    expected = F.binary_cross_entropy_with_logits(real, torch.ones(16)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros(16)
    )
    torch.testing.assert_close(total, expected)
    # the non-saturating G loss -log D(G(z)), not the saturating log(1 - D(G(z)))
    expected_g = F.binary_cross_entropy_with_logits(fake, torch.ones(16))
    torch.testing.assert_close(loss.g_objective(fake), expected_g)


@pytest.mark.parametrize(
    ("real", "fake", "expected_d", "expected_g"),
    [
        (1.0, -1.0, 0.0, 1.0),  # at the margins: D has nothing left to learn
        (0.0, 0.0, 2.0, 0.0),  # one per term
        (-1.0, 1.0, 4.0, -1.0),  # two per term
        (3.0, -3.0, 0.0, 3.0),  # beyond the margins hinge is flat for D, linear for G
    ],
)
def test_hinge_values(real, fake, expected_d, expected_g):
    loss = loss_fn(loss="hinge", mismatch_weight=1.0)
    total, _ = loss.d_objective(full(real), full(fake), full(fake), ALL_VALID)
    assert total.item() == pytest.approx(expected_d)
    assert loss.g_objective(full(fake)).item() == pytest.approx(expected_g)


@pytest.mark.parametrize(("weight", "expected"), [(0.0, 1.0), (1.0, 1.5), (3.0, 1.75)])
def test_mismatch_weight_blends_fake_and_mismatch_terms(weight, expected):
    # hinge: real term 0, fake term 1 (logit 0), mismatch term 2 (logit 1)
    loss = loss_fn(loss="hinge", mismatch_weight=weight)
    total, _ = loss.d_objective(full(1.0), full(0.0), full(1.0), ALL_VALID)
    assert total.item() == pytest.approx(expected)  # (1 + w * 2) / (1 + w)


def test_mismatched_text_rolls_and_flags_duplicate_captions():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    rolled, valid = mismatched_text(text)
    torch.testing.assert_close(rolled, text[[3, 0, 1, 2]])
    assert valid.tolist() == [True, True, False, True]  # sample 2 got its own caption back
    _, single = mismatched_text(text[:1])
    assert single.tolist() == [False]


def test_invalid_mismatch_pairs_are_left_out():
    loss = loss_fn(loss="hinge", mismatch_weight=1.0)
    mismatch = torch.tensor([-1.0, -1.0, 5.0, 5.0])  # costs 0, 0, 6, 6
    valid = torch.tensor([True, True, False, False])
    _, terms = loss.d_objective(full(1.0), full(-1.0), mismatch, valid)
    assert terms["D_mismatch"].item() == 0.0
    total, _ = loss.d_objective(full(1.0), full(0.0), mismatch, torch.zeros(4, dtype=torch.bool))
    assert total.item() == pytest.approx(1.0)  # no valid pair: plain real + fake


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="wasserstein"):
        loss_fn(loss="wasserstein")
    with pytest.raises(ValueError, match="phase"):
        loss_fn()("E", None, None, None, torch.zeros(1, 1), torch.zeros(1, 1))


def tiny_networks(cfg: GANConfig, text_dim: int = 6):
    generator, discriminator = Generator.from_config(cfg, text_dim), Discriminator.from_config(cfg, text_dim)
    with torch.no_grad():  # leave the zero-initialised gains / affine layers
        for parameter in [*generator.parameters(), *discriminator.parameters()]:
            parameter.add_(0.1 * torch.randn_like(parameter))
    return generator, discriminator


@pytest.mark.parametrize("loss_name", ["hinge", "nonsaturating"])
def test_phases_train_only_their_network_and_report_penalties(loss_name):
    cfg = config_from_dict(
        {
            "preset": "gan-tiny16",
            "loss": loss_name,
            "r1_weight": 1.0,
            "diffaugment": "color,translation,cutout",
        },
        GANConfig,
    )
    generator, discriminator = tiny_networks(cfg)
    loss = GANLoss(cfg)
    real, text, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 6), torch.randn(4, cfg.z_dim)

    d_loss, stats = loss("D", generator, discriminator, real, text, z, torch.Generator().manual_seed(0))
    d_loss.backward()
    assert all(parameter.grad is None for parameter in generator.parameters())
    assert all(parameter.grad is not None for parameter in discriminator.parameters())
    assert stats["ma_gp"] > 0 and stats["r1"] > 0
    expected = stats["D_real"] + (stats["D_fake"] + stats["D_mismatch"]) / 2 + stats["ma_gp"] + stats["r1"]
    torch.testing.assert_close(stats["loss_D"], expected)
    assert not any(value.requires_grad for value in stats.values())

    discriminator.zero_grad(set_to_none=True)
    discriminator.requires_grad_(False)  # the trainer's job in phase G
    g_loss, stats = loss("G", generator, discriminator, None, text, z, torch.Generator().manual_seed(0))
    g_loss.backward()
    assert all(parameter.grad is not None for parameter in generator.parameters())
    assert set(stats) == {"loss_G", "logit_fake"}


def test_d_phase_without_penalties_reports_none_and_is_deterministic_with_rng():
    overrides = {"preset": "gan-tiny16", "ma_gp_weight": 0.0, "diffaugment": "translation"}
    cfg = config_from_dict(overrides, GANConfig)
    generator, discriminator = tiny_networks(cfg)
    loss = GANLoss(cfg)
    real, text, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 6), torch.randn(4, cfg.z_dim)
    runs = [
        loss("D", generator, discriminator, real, text, z, torch.Generator().manual_seed(seed))
        for seed in (1, 1, 2)
    ]
    assert "ma_gp" not in runs[0][1] and "r1" not in runs[0][1]
    torch.testing.assert_close(runs[0][0], runs[1][0])
    assert not torch.allclose(runs[0][0], runs[2][0])


def test_caption_contrastive_is_cross_entropy_over_the_batch_captions():
    scores = torch.randn(4, 4)  # [caption j, image i]
    text = torch.randn(4, 6)
    expected = torch.stack([-F.log_softmax(scores[:, i], dim=0)[i] for i in range(4)]).mean()
    torch.testing.assert_close(caption_contrastive(scores, text), expected)
    # a perfectly matching D (own caption far above the rest) costs ~0; swapping captions costs a lot
    assert caption_contrastive(20 * torch.eye(4), text) < 1e-6
    assert caption_contrastive(20 * torch.eye(4).roll(1, dims=0), text) > 10


def test_caption_contrastive_leaves_duplicate_captions_out_of_the_softmax():
    text = torch.randn(3, 6)
    text[2] = text[0]  # images 0 and 2 share a caption: neither is the other's negative
    scores = torch.randn(3, 3)

    def own_vs(i, negatives):
        column = scores[[i, *negatives], i]
        return -F.log_softmax(column, dim=0)[0]

    expected = torch.stack([own_vs(0, [1]), own_vs(1, [0, 2]), own_vs(2, [1])]).mean()
    torch.testing.assert_close(caption_contrastive(scores, text), expected)
    assert caption_contrastive(torch.randn(1, 1), torch.randn(1, 6)) == 0  # nothing to contrast


def test_contrastive_weight_adds_the_term_to_both_phases():
    cfg = config_from_dict(
        {"preset": "gan-tiny16", "disc_head": "projection", "contrastive_weight": 0.5}, GANConfig
    )
    generator, discriminator = tiny_networks(cfg)
    loss = GANLoss(cfg)
    real, text, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 6), torch.randn(4, cfg.z_dim)
    _, stats = loss("D", generator, discriminator, real, text, z)
    expected = stats["D_real"] + (stats["D_fake"] + stats["D_mismatch"]) / 2 + stats["ma_gp"]
    torch.testing.assert_close(stats["loss_D"], expected + 0.5 * stats["contrastive"])
    scores = discriminator(real, text[:, None].expand(-1, 4, -1))  # [caption j, image i]
    torch.testing.assert_close(stats["contrastive"], caption_contrastive(scores, text))

    g_loss, stats = loss("G", generator, discriminator, None, text, z)
    fake_scores = discriminator(generator(z, text), text[:, None].expand(-1, 4, -1))
    expected = -fake_scores.diagonal().mean() + 0.5 * caption_contrastive(fake_scores, text)  # hinge G
    torch.testing.assert_close(g_loss, expected)
    assert stats["contrastive"] > 0
    with pytest.raises(ValueError, match=r"gan\.contrastive_weight must be >= 0 .* got -1\.0"):
        GANLoss(config_from_dict({"contrastive_weight": -1.0}, GANConfig))


def test_the_contrastive_term_alone_trains_both_networks_and_leaves_ma_gp_unchanged():
    overrides = {"preset": "gan-tiny16", "disc_head": "projection"}
    cfg_off = config_from_dict(overrides, GANConfig)
    cfg_on = config_from_dict({**overrides, "contrastive_weight": 0.5}, GANConfig)
    generator, discriminator = tiny_networks(cfg_on)
    real, text, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 6), torch.randn(4, cfg_on.z_dim)
    _, off = GANLoss(cfg_off)("D", generator, discriminator, real, text, z)
    _, on = GANLoss(cfg_on)("D", generator, discriminator, real, text, z)
    torch.testing.assert_close(on["ma_gp"], off["ma_gp"])  # penalty on matching pairs only
    torch.testing.assert_close(on["loss_D"] - 0.5 * on["contrastive"], off["loss_D"])

    # through GANLoss, the term changes V's gradient (D phase) and G's gradient (G phase)
    def gradients(cfg, phase, network):
        network.zero_grad(set_to_none=True)
        loss, _ = GANLoss(cfg)(phase, generator, discriminator, real, text, z)
        loss.backward()
        return [parameter.grad.clone() for parameter in network.parameters()]

    discriminator.requires_grad_(True)
    v_off = gradients(cfg_off, "D", discriminator.text_projection)[0]
    v_on = gradients(cfg_on, "D", discriminator.text_projection)[0]
    assert not torch.allclose(v_on, v_off)
    discriminator.requires_grad_(False)
    g_off = gradients(cfg_off, "G", generator)
    g_on = gradients(cfg_on, "G", generator)
    assert any(not torch.allclose(a, b) for a, b in zip(g_on, g_off))
