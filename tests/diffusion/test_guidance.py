"""Classifier-free guidance: one doubled batch, the mixing formula, w = 1 skips the null half."""

from __future__ import annotations

import math

import pytest
import torch

from imagegen.diffusion import guided_denoiser


class RecordingModel:
    """model_output = x_t * (1 + text_pooled) + lowres: depends on every condition key; records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t, text_pooled, lowres):
        self.calls.append({"x_t": x_t, "t": t, "text_pooled": text_pooled, "lowres": lowres})
        return x_t * (1 + text_pooled.view(-1, 1, 1, 1)) + lowres


@pytest.fixture
def inputs():
    batch = 3
    cond = {"text_pooled": torch.tensor([1.0, 2.0, 3.0]), "lowres": torch.randn(batch, 2, 4, 4)}
    uncond = {"text_pooled": torch.tensor([-0.5])}  # batch 1; lowres shared with cond
    x_t = torch.randn(batch, 2, 4, 4)
    t = torch.tensor([5, 5, 5])
    return cond, uncond, x_t, t


def test_guidance_mixes_uncond_and_cond_from_one_doubled_batch(inputs):
    cond, uncond, x_t, t = inputs
    model = RecordingModel()
    out = guided_denoiser(model, cond, uncond, 4.0)(x_t, t)
    assert len(model.calls) == 1
    call = model.calls[0]
    assert call["x_t"].shape[0] == 6 and torch.equal(call["t"], torch.cat([t, t]))
    assert torch.equal(call["text_pooled"], torch.tensor([1.0, 2.0, 3.0, -0.5, -0.5, -0.5]))
    assert torch.equal(call["lowres"], torch.cat([cond["lowres"], cond["lowres"]]))
    out_cond = x_t * (1 + cond["text_pooled"].view(-1, 1, 1, 1)) + cond["lowres"]
    out_uncond = x_t * 0.5 + cond["lowres"]
    torch.testing.assert_close(out, out_uncond + 4.0 * (out_cond - out_uncond))


def test_scale_zero_is_unconditional(inputs):
    cond, uncond, x_t, t = inputs
    out = guided_denoiser(RecordingModel(), cond, uncond, 0.0)(x_t, t)
    torch.testing.assert_close(out, x_t * 0.5 + cond["lowres"])


def test_scale_one_is_a_plain_conditional_call(inputs):
    cond, uncond, x_t, t = inputs
    model = RecordingModel()
    out = guided_denoiser(model, cond, uncond, 1.0)(x_t, t)
    assert len(model.calls) == 1 and model.calls[0]["x_t"].shape[0] == 3
    assert torch.equal(model.calls[0]["text_pooled"], cond["text_pooled"])
    assert torch.equal(out, x_t * (1 + cond["text_pooled"].view(-1, 1, 1, 1)) + cond["lowres"])
    guided_denoiser(model, cond, None, 1.0)(x_t, t)  # no unconditional branch needed


@pytest.mark.parametrize(
    "scale", [-0.5, math.nan, math.inf, -math.inf, "5", pytest.param(10**400, id="int-beyond-float")]
)
def test_bad_guidance_scale_names_the_argument(inputs, scale):
    cond, uncond, _, _ = inputs
    with pytest.raises(ValueError, match="guidance_scale"):
        guided_denoiser(RecordingModel(), cond, uncond, scale)


def test_mismatched_uncond_is_rejected(inputs):
    cond, _, _, _ = inputs
    with pytest.raises(ValueError, match="uncond"):
        guided_denoiser(RecordingModel(), cond, None, 3.0)
    with pytest.raises(ValueError, match="batch 1 or 3"):
        guided_denoiser(RecordingModel(), cond, {"text_pooled": torch.zeros(2)}, 3.0)


@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_low_precision_model_output_is_mixed_in_fp32(inputs, scale):
    cond, uncond, x_t, t = inputs
    model = RecordingModel()
    out = guided_denoiser(lambda *args, **kw: model(*args, **kw).bfloat16(), cond, uncond, scale)(x_t, t)
    both = (
        model(
            torch.cat([x_t, x_t]),
            torch.cat([t, t]),
            torch.tensor([1.0, 2, 3, -0.5, -0.5, -0.5]),
            torch.cat([cond["lowres"]] * 2),
        )
        .bfloat16()
        .float()
    )
    expected = both[3:] + scale * (both[:3] - both[3:]) if scale != 1 else both[:3]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
