"""EfficientUNet behaviour on tiny presets: shapes, masking, skips, low-res path, I/O, errors, grads."""

from __future__ import annotations

import pytest
import torch

from imagegen.config import UNetConfig, config_from_dict
from imagegen.models import EfficientUNet
from imagegen.models.unet_levels import SKIP_SCALE

TEXT_DIM = 384


def build(preset: str, **overrides) -> EfficientUNet:
    cfg = config_from_dict({"preset": preset, **overrides}, UNetConfig)
    model = EfficientUNet.from_config_dataclass(cfg).eval()
    with torch.no_grad():  # leave the zero init so outputs are not identically 0
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def inputs(model: EfficientUNet, batch: int = 2, size: int | None = None, length: int = 6) -> dict:
    cfg = model.config
    size = size or cfg.image_size
    cond = dict(
        x_t=torch.randn(batch, cfg.in_channels, size, size),
        t=torch.randint(0, 1000, (batch,)),
        text_tokens=torch.randn(batch, length, cfg.text_dim),
        text_mask=torch.arange(length)[None].expand(batch, -1) < torch.tensor([[4], [2]])[:batch],
        text_pooled=torch.randn(batch, cfg.text_dim),
    )
    if cfg.lowres_cond:
        cond["lowres"] = torch.rand(batch, cfg.in_channels, size // 2, size // 2) * 2 - 1
        cond["aug_level"] = torch.tensor([0.0, 250.0])[:batch]
    return cond


@pytest.fixture(scope="module")
def tiny32() -> EfficientUNet:
    torch.manual_seed(1)
    return build("tiny32")


@pytest.fixture(scope="module")
def sr32() -> EfficientUNet:
    torch.manual_seed(2)
    return build("sr32")


@pytest.mark.parametrize("preset", ["tiny16", "tiny32", "sr32", "sr64-tiny"])
def test_tiny_presets_output_shape(preset):
    model = build(preset)
    cond = inputs(model)
    with torch.no_grad():
        out = model(**cond)
    assert out.shape == cond["x_t"].shape
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_fresh_model_predicts_zero():
    model = EfficientUNet.from_config_dataclass(config_from_dict({"preset": "tiny16"}, UNetConfig))
    with torch.no_grad():
        assert torch.all(model(**inputs(model)) == 0)


def test_padding_tokens_do_not_change_the_output(tiny32):
    cond = inputs(tiny32, length=6)
    padded = dict(cond)
    garbage = 50 * torch.randn(2, 10, TEXT_DIM)
    padded["text_tokens"] = torch.cat([cond["text_tokens"], garbage], dim=1)  # [2, 16, D]
    padded["text_mask"] = torch.cat([cond["text_mask"], torch.zeros(2, 10, dtype=torch.bool)], dim=1)
    masked = ~padded["text_mask"]
    padded["text_tokens"][masked] = 50 * torch.randn_like(padded["text_tokens"][masked])
    with torch.no_grad():
        out = tiny32(**cond)
        torch.testing.assert_close(tiny32(**padded), out, atol=1e-5, rtol=1e-5)
        # a real token does change it (so the test above is not vacuous)
        cond["text_tokens"][0, 0] = torch.randn(TEXT_DIM)
        assert not torch.allclose(tiny32(**cond)[0], out[0], atol=1e-5)


def test_all_false_mask_gives_finite_output(tiny32):
    cond = inputs(tiny32)
    cond["text_mask"] = torch.zeros_like(cond["text_mask"])
    with torch.no_grad():
        out = tiny32(**cond)
        cond["text_tokens"] = torch.randn_like(cond["text_tokens"])
        again = tiny32(**cond)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(again, out)


def test_examples_do_not_interact_and_int_or_float_t_agree(tiny32):
    cond = inputs(tiny32)
    first = {key: value[:1] for key, value in cond.items()}
    with torch.no_grad():
        out = tiny32(**cond)
        torch.testing.assert_close(tiny32(**first), out[:1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tiny32(**{**cond, "t": cond["t"].float()}), out)
        assert not torch.allclose(tiny32(**{**cond, "t": cond["t"] + 100}), out)


def test_skip_connections_are_scaled_by_inverse_sqrt2(tiny32):
    skips, decoder_inputs = [], []
    hooks = [level.register_forward_hook(lambda m, a, out: skips.append(out)) for level in tiny32.encoder]
    hooks += [
        level.body.register_forward_pre_hook(lambda m, args: decoder_inputs.append(args[0]))
        for level in tiny32.decoder
    ]
    with torch.no_grad():
        tiny32(**inputs(tiny32))
    for hook in hooks:
        hook.remove()
    assert SKIP_SCALE == pytest.approx(2**-0.5)
    for concat, skip in zip(decoder_inputs, reversed(skips)):
        width = skip.shape[1]
        assert concat.shape[1] == 2 * width
        torch.testing.assert_close(concat[:, width:], skip * 2**-0.5)


def test_lowres_and_aug_level_change_the_output(sr32):
    cond = inputs(sr32)
    with torch.no_grad():
        out = sr32(**cond)
        other_lowres = sr32(**{**cond, "lowres": torch.rand_like(cond["lowres"])})
        other_level = sr32(**{**cond, "aug_level": cond["aug_level"] + 300})
    assert not torch.allclose(other_lowres, out, atol=1e-4)
    assert not torch.allclose(other_level, out, atol=1e-4)


def test_lowres_is_upsampled_bilinearly_inside(sr32):
    cond = inputs(sr32)
    upsampled = torch.nn.functional.interpolate(cond["lowres"], size=(32, 32), mode="bilinear")
    with torch.no_grad():
        torch.testing.assert_close(sr32(**{**cond, "lowres": upsampled}), sr32(**cond))


def test_sr_without_self_attention_runs_at_twice_its_training_size(sr32):
    assert not any(sr32.config.self_attn)
    cond = inputs(sr32, size=2 * sr32.config.image_size)
    with torch.no_grad():
        out = sr32(**cond)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()


def test_save_pretrained_round_trip(tmp_path, sr32):
    sr32.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = EfficientUNet.from_pretrained(tmp_path).eval()
    assert loaded.config.channels == sr32.config.channels and loaded.config.lowres_cond
    cond = inputs(sr32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**cond), sr32(**cond), atol=0, rtol=0)


def _bad(cond: dict, **changes) -> dict:
    return {**cond, **changes}


@pytest.mark.parametrize(
    "name, change",
    [
        ("text_tokens", lambda c: _bad(c, text_tokens=torch.randn(2, 6, 128))),
        ("text_pooled", lambda c: _bad(c, text_pooled=torch.randn(2, 128))),
        ("text_mask", lambda c: _bad(c, text_mask=c["text_mask"].float())),
        ("x_t", lambda c: _bad(c, x_t=torch.randn(2, 4, 32, 32))),
        ("x_t", lambda c: _bad(c, x_t=torch.randn(2, 3, 30, 32))),
        ("t", lambda c: _bad(c, t=torch.zeros(3))),
        ("lowres", lambda c: _bad(c, lowres=torch.randn(2, 3, 16, 16))),
        ("aug_level", lambda c: _bad(c, aug_level=torch.zeros(2))),
    ],
)
def test_bad_inputs_name_the_argument(tiny32, name, change):
    with pytest.raises(ValueError, match=name):
        tiny32(**change(inputs(tiny32)))


@pytest.mark.parametrize(
    "name, change",
    [
        ("lowres", lambda c: {k: v for k, v in c.items() if k != "lowres"}),
        ("aug_level", lambda c: {k: v for k, v in c.items() if k != "aug_level"}),
        ("lowres", lambda c: _bad(c, lowres=torch.randn(2, 1, 16, 16))),
    ],
)
def test_bad_super_resolution_inputs_name_the_argument(sr32, name, change):
    with pytest.raises(ValueError, match=name):
        sr32(**change(inputs(sr32)))


def test_mismatched_level_lists_fail_at_construction():
    with pytest.raises(ValueError, match="num_res_blocks"):
        EfficientUNet(channels=[32, 64], num_res_blocks=[1, 1, 2], self_attn=[False, True])


@pytest.mark.parametrize("preset", ["tiny32", "sr32"])
def test_every_parameter_gets_a_gradient(preset):
    model = build(preset).train()
    cond = inputs(model)
    out = model(**cond)
    (out * torch.randn_like(out)).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_channels_last_model_gives_the_same_output(tiny32):
    cond = inputs(tiny32)
    with torch.no_grad():
        out = tiny32(**cond)
        tiny32.to(memory_format=torch.channels_last)
        cond["x_t"] = cond["x_t"].contiguous(memory_format=torch.channels_last)
        last = tiny32(**cond)
        tiny32.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(last, out, atol=1e-5, rtol=1e-5)


def test_half_precision_text_is_accepted(tiny32):
    cond = inputs(tiny32)
    half = {**cond, "text_tokens": cond["text_tokens"].half(), "text_pooled": cond["text_pooled"].half()}
    with torch.no_grad():
        out = tiny32(**half)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, tiny32(**cond), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_a_saved_unet_reloads_with_its_prediction_type(tmp_path, prediction):
    """config.json says what the weights predict: they are usable without the run's config.yaml."""
    import json

    from imagegen import factory

    cfg = config_from_dict({"preset": "tiny16"}, UNetConfig)
    factory.build_unet(cfg, TEXT_DIM, prediction=prediction).save_pretrained(tmp_path / "unet")
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["prediction_type"] == prediction
    assert factory.load_unet(tmp_path / "unet").config.prediction_type == prediction


def test_a_unet_saved_before_the_prediction_type_was_recorded_loads_as_unknown(tmp_path):
    """A config.json without the key (written by main 76900e1) loads with prediction_type None,
    and a pipeline then reads the weights as the run's diffusion.prediction says."""
    import json

    from imagegen import factory
    from imagegen.config import DiffusionConfig

    cfg = config_from_dict({"preset": "tiny16"}, UNetConfig)
    factory.build_unet(cfg, TEXT_DIM, prediction="v").save_pretrained(tmp_path / "unet")
    path = tmp_path / "unet" / "config.json"
    path.write_text(
        json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "prediction_type"})
    )
    model = factory.load_unet(tmp_path / "unet")
    assert model.config.prediction_type is None
    factory.check_prediction(model, DiffusionConfig(prediction="eps"), path.parent)  # unknown: no error


def test_a_unet_whose_saved_prediction_type_disagrees_with_the_config_is_refused(tmp_path):
    from imagegen import factory
    from imagegen.config import DiffusionConfig

    cfg = config_from_dict({"preset": "tiny16"}, UNetConfig)
    model = factory.build_unet(cfg, TEXT_DIM, prediction="x0")
    factory.check_prediction(model, DiffusionConfig(prediction="x0"), "unet")
    with pytest.raises(ValueError, match="saved predicting 'x0'.*diffusion.prediction='v'"):
        factory.check_prediction(model, DiffusionConfig(prediction="v"), "unet")
    with pytest.raises(ValueError, match="prediction_type"):
        EfficientUNet.from_config_dataclass(cfg, prediction_type="score")
