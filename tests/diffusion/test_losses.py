"""DiffusionLoss: min-SNR weights, conditioning dropout, oracle zero loss, fp32 output."""

from __future__ import annotations

import pytest
import torch

from imagegen.diffusion import DiffusionLoss, GaussianDiffusion, drop_condition, min_snr_weight

PREDICTIONS = ("eps", "v", "x0")


def test_min_snr_weight_values_at_known_timesteps():
    diffusion = GaussianDiffusion("cosine", 1000, "eps")
    t = torch.tensor([10, 999])  # snr ~ 1.5e3 > gamma, and snr ~ 2e-9 < gamma
    snr = diffusion.snr(t).double()
    assert snr[0] > 5 > snr[1]
    expected = {
        "eps": [5 / snr[0], 1.0],
        "v": [5 / (snr[0] + 1), snr[1] / (snr[1] + 1)],
        "x0": [5.0, snr[1]],
    }
    for prediction in PREDICTIONS:
        loss = DiffusionLoss(GaussianDiffusion("cosine", 1000, prediction), "min_snr", 5.0)
        weight = loss.weight(t)
        assert weight.dtype == torch.float32
        torch.testing.assert_close(
            weight.double(), torch.tensor(expected[prediction], dtype=torch.float64), rtol=1e-5, atol=1e-12
        )
    assert torch.equal(DiffusionLoss(diffusion, "none").weight(t), torch.ones(2))


def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error_for_every_prediction(from_x0):
    """The same x0 error costs min(snr, gamma) * mse(x0) whatever the network predicts (Hang et al.)."""
    x0 = torch.rand(8, 3, 8, 8) * 2 - 1
    error = 0.1 * torch.randn(8, 3, 8, 8)
    losses = {}
    for prediction in PREDICTIONS:
        diffusion = GaussianDiffusion("cosine", 1000, prediction)
        seen = {}

        def model(x_t, t, diffusion=diffusion, seen=seen):
            seen["t"] = t
            return from_x0(diffusion, x0 + error, x_t, t)

        loss = DiffusionLoss(diffusion, "min_snr", 5.0)(
            model, x0, {}, generator=torch.Generator().manual_seed(3)
        )
        expected = diffusion.snr(seen["t"]).clamp(max=5.0) * error.pow(2).flatten(1).mean(1)
        torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-6)
        losses[prediction] = loss
    torch.testing.assert_close(losses["eps"], losses["v"], rtol=1e-3, atol=1e-6)
    assert min_snr_weight(torch.tensor([10.0]), "x0", 5.0).item() == 5.0


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_oracle_model_gives_zero_loss(oracle_model, prediction):
    diffusion = GaussianDiffusion("cosine", 1000, prediction)
    x0 = torch.rand(16, 3, 8, 8) * 2 - 1
    model = oracle_model(diffusion, x0)
    loss = DiffusionLoss(diffusion, "none")(model, x0, {}, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (16,) and loss.dtype == torch.float32
    assert loss.max().item() < 1e-8
    wrong = DiffusionLoss(diffusion, "none")(lambda x_t, t: torch.zeros_like(x_t), x0, {})
    assert wrong.min().item() > 1e-3


def test_dropout_rate_is_cond_drop_prob():
    batch = 4000
    cond = {"text_pooled": torch.ones(batch, 2)}
    null = {"text_pooled": torch.zeros(1, 2)}
    seen = {}

    def model(x_t, t, text_pooled):
        seen["pooled"] = text_pooled
        return torch.zeros_like(x_t)

    x0 = torch.zeros(batch, 1, 2, 2)
    DiffusionLoss(GaussianDiffusion(prediction="eps"))(
        model, x0, cond, null, 0.3, torch.Generator().manual_seed(0)
    )
    dropped = seen["pooled"][:, 0] == 0
    assert torch.all(seen["pooled"][dropped] == 0) and torch.all(seen["pooled"][~dropped] == 1)
    assert abs(dropped.float().mean().item() - 0.3) < 0.03  # 4 standard deviations
    for probability, expected in ((0.0, 0.0), (1.0, 1.0)):
        DiffusionLoss(GaussianDiffusion(prediction="eps"))(model, x0, cond, null, probability)
        assert (seen["pooled"][:, 0] == 0).float().mean().item() == expected
    DiffusionLoss(GaussianDiffusion(prediction="eps"))(model, x0, cond, None, 1.0)  # no null: no dropout
    assert torch.all(seen["pooled"] == 1)


def test_dropped_rows_equal_the_null_rows_exactly():
    batch = 64
    cond = {
        "text_tokens": torch.randn(batch, 5, 4),
        "text_mask": torch.ones(batch, 5, dtype=torch.bool),
        "lowres": torch.randn(batch, 3, 4, 4),
    }
    null = {
        "text_tokens": torch.randn(1, 5, 4),
        "text_mask": torch.tensor([[True, False, False, False, False]]),
    }
    drop = torch.rand(batch) < 0.5
    out = drop_condition(cond, null, drop)
    assert 0 < drop.sum() < batch
    assert torch.equal(out["text_tokens"][drop], null["text_tokens"].expand(int(drop.sum()), 5, 4))
    assert torch.equal(out["text_tokens"][~drop], cond["text_tokens"][~drop])
    assert torch.equal(out["text_mask"][drop], null["text_mask"].expand(int(drop.sum()), 5))
    assert out["text_mask"].dtype == torch.bool
    assert torch.equal(out["lowres"], cond["lowres"])  # not in the null condition: never dropped
    per_row_null = {"text_tokens": torch.randn(batch, 5, 4)}
    torch.testing.assert_close(
        drop_condition(cond, per_row_null, drop)["text_tokens"][drop],
        per_row_null["text_tokens"][drop],
        rtol=0,
        atol=0,
    )


def test_loss_is_fp32_and_reproducible():
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1

    def model(x_t, t):
        return (0.5 * x_t).bfloat16()

    loss = DiffusionLoss(diffusion)
    first = loss(model, x0, {}, generator=torch.Generator().manual_seed(5))
    again = loss(model, x0, {}, generator=torch.Generator().manual_seed(5))
    other = loss(model, x0, {}, generator=torch.Generator().manual_seed(6))
    assert first.dtype == torch.float32 and first.shape == (4,)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_bad_arguments_raise():
    diffusion = GaussianDiffusion()
    with pytest.raises(ValueError, match="loss_weighting.*none, min_snr"):
        DiffusionLoss(diffusion, "snr")
    with pytest.raises(ValueError, match="cond_drop_prob"):
        DiffusionLoss(diffusion)(lambda x_t, t: x_t, torch.zeros(2, 1, 2, 2), {}, cond_drop_prob=1.5)
    with pytest.raises(ValueError, match="batch"):
        drop_condition({"a": torch.zeros(4, 2)}, {"a": torch.zeros(2, 2)}, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="not in the condition"):
        drop_condition({"a": torch.zeros(4, 2)}, {"b": torch.zeros(1, 2)}, torch.zeros(4, dtype=torch.bool))


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_noise_offset_adds_a_per_channel_constant_and_keeps_the_oracle_exact(offset, oracle_model):
    """With x0 = 0, x_t / sqrt(1 - alpha_bar_t) is the training noise: its per-image, per-channel
    mean has variance offset^2 + 1/(H W). An oracle that knows x0 still has zero loss."""
    diffusion = GaussianDiffusion("cosine", 1000, "eps")
    means = []

    def recorder(x_t, t):
        noise = x_t / (1 - diffusion.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
        means.append(noise.mean(dim=(2, 3)).flatten())
        return torch.zeros_like(x_t)

    loss = DiffusionLoss(diffusion, "none", noise_offset=offset)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        loss(recorder, torch.zeros(64, 3, 8, 8), {}, generator=generator)
    spread = torch.cat(means).var().item()
    assert spread == pytest.approx(offset**2 + 1 / 64, rel=0.1)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    oracle = DiffusionLoss(diffusion, "none", noise_offset=offset)(oracle_model(diffusion, x0), x0, {})
    assert oracle.abs().max() < 1e-4
    with pytest.raises(ValueError, match="noise_offset"):
        DiffusionLoss(diffusion, noise_offset=-0.1)


def test_logit_normal_timesteps_follow_their_distribution():
    """t / T = sigmoid(N(mean, std^2)): the median sits at sigmoid(mean) and the share in a band
    matches the normal CDF; uniform stays uniform."""
    diffusion = GaussianDiffusion("cosine", 1000, "v")
    generator = torch.Generator().manual_seed(0)
    skewed = DiffusionLoss(diffusion, "none", timestep_sampling="logit_normal", timestep_mean=0.4)
    t = skewed.sample_timesteps(200_000, generator, torch.device("cpu")).float()
    assert t.min() >= 0 and t.max() <= 999
    assert t.median().item() == pytest.approx(1000 * torch.sigmoid(torch.tensor(0.4)).item(), abs=3)
    band = ((t >= 300) & (t < 900)).float().mean().item()
    normal = torch.distributions.Normal(0.4, 1.0)
    expected = (
        normal.cdf(torch.logit(torch.tensor(0.9))) - normal.cdf(torch.logit(torch.tensor(0.3)))
    ).item()
    assert band == pytest.approx(expected, abs=0.005)
    flat = DiffusionLoss(diffusion, "none").sample_timesteps(200_000, generator, torch.device("cpu")).float()
    assert ((flat >= 300) & (flat < 900)).float().mean().item() == pytest.approx(0.6, abs=0.005)
    with pytest.raises(ValueError, match="timestep_sampling"):
        DiffusionLoss(diffusion, timestep_sampling="beta")
