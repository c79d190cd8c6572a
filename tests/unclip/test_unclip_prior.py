"""unCLIP's diffusion prior: it learns caption -> z_i, guidance drops only the caption, exact resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from imagegen.config import SampleConfig
from imagegen.diffusion import DiffusionLoss, GaussianDiffusion
from imagegen.diffusion.embeddings import prior_condition, sample_image_embeds, slerp
from imagegen.models.prior import DiffusionPrior
from imagegen.training.trainer import Trainer

CAPTIONS, TOKENS, WIDTH, DIM = 6, 8, 16, 16


def _pairs(generator: torch.Generator):
    """Six 'captions' (token states, mask, z_t) and the unrelated unit z_i each stands for."""
    tokens = torch.randn(CAPTIONS, TOKENS, WIDTH, generator=generator)
    lengths = torch.tensor([3, 4, 5, 6, 7, 8])
    mask = torch.arange(TOKENS)[None, :] < lengths[:, None]  # [6, 8], a prefix of each row
    tokens = tokens * mask[..., None]
    z_t = F.normalize(torch.randn(CAPTIONS, DIM, generator=generator), dim=-1)
    z_i = F.normalize(torch.randn(CAPTIONS, DIM, generator=generator), dim=-1)
    return tokens, mask, z_t, z_i


def test_a_trained_prior_lands_nearer_its_own_captions_z_i_than_others_and_than_z_t():
    """Diagonal beats off-diagonal: after training on six (caption, z_i) pairs, the embedding
    sampled for caption b has a higher cosine to z_i[b] than to any other z_i[c] and than z_t[b]."""
    generator = torch.Generator().manual_seed(0)
    tokens, mask, z_t, z_i = _pairs(generator)
    prior = DiffusionPrior(embed_dim=DIM, text_width=WIDTH, num_tokens=TOKENS, layers=2, heads=2, head_dim=16)
    diffusion = GaussianDiffusion("cosine", 1000, "x0")
    loss_fn = DiffusionLoss(diffusion, weighting="none")
    no_tokens = torch.zeros(1, TOKENS, dtype=torch.bool)
    null = prior_condition(torch.zeros(1, TOKENS, WIDTH), no_tokens, torch.zeros(1, DIM))
    optimizer = torch.optim.AdamW(prior.parameters(), lr=2e-3)
    repeat = 8
    cond = prior_condition(tokens, mask, z_t)
    cond = {key: value.repeat(repeat, *([1] * (value.ndim - 1))) for key, value in cond.items()}
    x0 = (z_i * DIM**0.5).repeat(repeat, 1)[:, :, None, None]
    for _ in range(300):
        loss = loss_fn(prior, x0, cond, null_cond=null, cond_drop_prob=0.1, generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    settings = SampleConfig(sampler="ddim", num_steps=20, guidance_scale=1.0, thresholding="none")
    sampled = sample_image_embeds(
        prior, diffusion, settings, prior_condition(tokens, mask, z_t), null, z_t, generator, num_candidates=2
    )  # [6, 16] unit
    cosine = sampled @ z_i.T  # [6, 6]: row b, column c = cos(sample for b, z_i of c)
    diagonal = cosine.diagonal()
    off_diagonal = cosine.masked_fill(torch.eye(CAPTIONS, dtype=torch.bool), -2).max(dim=1).values
    assert (diagonal > off_diagonal).all(), cosine
    assert (diagonal > (z_t * z_i).sum(-1)).all()
    assert diagonal.mean() > 0.9


def test_guidance_drops_the_caption_and_never_the_noised_embedding():
    """DALLE2-pytorch #285: its unconditional branch also nulled the noised image embedding. Here
    both halves of the doubled batch see the same x_t; only tokens and z_t become the null caption's."""
    generator = torch.Generator().manual_seed(1)
    tokens, mask, z_t, _ = _pairs(generator)
    seen = []

    def spy(x_t, t, prior_tokens, prior_mask, prior_text_embed):
        seen.append((x_t.clone(), prior_tokens.clone(), prior_text_embed.clone()))
        return torch.zeros_like(x_t)

    null_tokens = torch.zeros(1, TOKENS, WIDTH)
    null = prior_condition(null_tokens, torch.zeros(1, TOKENS, dtype=torch.bool), torch.zeros(1, DIM))
    settings = SampleConfig(sampler="ddim", num_steps=3, guidance_scale=4.0, thresholding="none")
    diffusion = GaussianDiffusion("cosine", 1000, "x0")
    cond = prior_condition(tokens, mask, z_t)
    sample_image_embeds(spy, diffusion, settings, cond, null, z_t, generator, num_candidates=2)
    batch = CAPTIONS * 2  # two candidates per caption
    assert len(seen) == 3
    for x_t, prior_tokens, text_embed in seen:
        assert x_t.shape[0] == 2 * batch
        assert torch.equal(x_t[:batch], x_t[batch:])  # the noised z_i is shared by both branches
        assert torch.equal(prior_tokens[:batch], cond["prior_tokens"].repeat_interleave(2, 0))
        assert torch.equal(prior_tokens[batch:], null_tokens.expand(batch, -1, -1))
        assert torch.equal(text_embed[batch:], torch.zeros(batch, DIM))


def test_num_candidates_keeps_the_draw_nearest_z_t():
    """With a prior that returns z_t for the first candidate's row and -z_t for the second's,
    the kept embedding is always z_t (cos 1), whatever their order."""
    z_t = F.normalize(torch.randn(3, DIM), dim=-1)

    def fake(x_t, t, prior_tokens, prior_mask, prior_text_embed):
        sign = torch.tensor([-1.0, 1.0] * 3)[:, None]  # candidate 0 points away, candidate 1 at z_t
        return (sign * prior_text_embed)[:, :, None, None]

    cond = prior_condition(torch.zeros(3, TOKENS, WIDTH), torch.ones(3, TOKENS, dtype=torch.bool), z_t)
    settings = SampleConfig(sampler="ddim", num_steps=2, guidance_scale=1.0, thresholding="none")
    kept = sample_image_embeds(fake, GaussianDiffusion("cosine", 1000, "x0"), settings, cond, {}, z_t, None)
    assert torch.allclose(kept, z_t, atol=1e-5)


def test_slerp_stays_on_the_sphere_between_its_ends():
    a, b = F.normalize(torch.randn(4, DIM), dim=-1), F.normalize(torch.randn(4, DIM), dim=-1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=-1), torch.ones(4))
    ends = (a * b).sum(-1)
    to_a, to_b = (mid * a).sum(-1), (mid * b).sum(-1)
    assert torch.allclose(to_a, to_b, atol=1e-5) and (to_a > ends).all()  # nearer both ends than they are
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel ends: no division by sin 0


def _prior_weights(checkpoint):
    state = load_file(str(checkpoint / "state" / "model.safetensors"))
    shadow = load_file(str(checkpoint / "ema" / "prior" / "ema_shadow.safetensors"))
    return {**state, **{f"ema.{k}": v for k, v in shadow.items()}}


def test_prior_training_resumes_exactly(unclip_config):
    straight = Trainer(unclip_config("prior", "train.run_name=prior-straight")).fit()
    half = Trainer(unclip_config("prior", "train.run_name=prior-halves"))
    half.fit(stop_at=3)
    resumed = Trainer(unclip_config("prior", "train.run_name=prior-halves"), resume="latest").fit()
    a, b = _prior_weights(straight.checkpoint), _prior_weights(resumed.checkpoint)
    assert straight.step == resumed.step == 6 and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_prior_config_errors_name_the_key(unclip_config):
    from imagegen.config import ConfigError, check_trainable

    with pytest.raises(ConfigError, match="sample.thresholding"):
        unclip_config("prior", "sample.thresholding=dynamic")
    cfg = unclip_config("prior")
    with pytest.raises(ConfigError, match="unclip.clip"):
        check_trainable(dataclasses.replace(cfg, unclip=dataclasses.replace(cfg.unclip, clip="")))
    with pytest.raises(ConfigError, match="text.encoder"):
        check_trainable(dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, encoder="minilm")))
