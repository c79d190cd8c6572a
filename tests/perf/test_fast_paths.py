"""Fast paths (imagegen.training.fast, imagegen.pipelines.fast_sampling) compute what the eager path does.

Every fast path is compared with the plain eager fp32 path on a micro U-Net on the CPU: bf16
autocast, SDPA kernel choice, channels-last, torch.compile (aot_eager here; inductor is `slow`),
fused AdamW, activation checkpointing, guidance as one doubled batch, the sampling network's CPU
fallback, and the sync-free NaN guard, which must skip a non-finite step exactly.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from imagegen.config import RunConfig, SpeedConfig, config_from_dict
from imagegen.diffusion import GaussianDiffusion, sample_images
from imagegen.models import EfficientUNet
from imagegen.nn import CrossAttention, SelfAttention
from imagegen.pipelines.fast_sampling import GraphReplayedNetwork, sampling_network
from imagegen.training import fast

TEXT_DIM, LENGTH = 32, 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Micro networks: one thread is faster, and immune to other processes preempting OpenMP workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def micro_unet(dropout: float = 0.0, lowres_cond: bool = False) -> EfficientUNet:
    """8 px, two levels, self- and cross-attention at 4 px: every layer kind, in milliseconds."""
    torch.manual_seed(0)
    model = EfficientUNet(
        image_size=8,
        channels=[16, 32],
        num_res_blocks=[1, 2],
        self_attn=[False, True],
        cross_attn=[True, True],
        head_dim=16,
        text_dim=TEXT_DIM,
        cond_dim=32,
        dropout=dropout,
        lowres_cond=lowres_cond,
    )
    with torch.no_grad():  # move off the zero init so every layer changes the output
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def micro_inputs(batch: int = 3, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(batch, 3, 8, 8, generator=generator),
        t=torch.randint(0, 1000, (batch,), generator=generator),
        text_tokens=torch.randn(batch, LENGTH, TEXT_DIM, generator=generator),
        text_mask=torch.arange(LENGTH)[None].expand(batch, -1) < torch.tensor([[5], [2], [0]])[:batch],
        text_pooled=torch.randn(batch, TEXT_DIM, generator=generator),
    )


def loss_and_grads(model: nn.Module, inputs: dict, seed: int = 0) -> tuple[torch.Tensor, list]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # dropout draws
    loss = model(**inputs).square().mean()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def assert_grads_close(ours: list, reference: list, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert len(ours) == len(reference)
    for mine, ref in zip(ours, reference):
        torch.testing.assert_close(mine, ref, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


def test_speed_defaults_are_the_eager_path_and_bad_names_are_refused():
    speed = RunConfig().speed
    assert not (speed.compile or speed.channels_last or speed.activation_checkpointing)
    assert speed.attention_backend == "auto" and not speed.cuda_graphs_sampling and not speed.sync_free_step
    model = micro_unet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fast.compile_network(fast.prepare_network(model, speed), speed) is model
    assert model._compiled_call_impl is None
    assert not model.gradient_checkpointing
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    cfg = config_from_dict({"speed": {"compile": True, "attention_backend": "flash"}})
    assert cfg.speed.compile and cfg.speed.attention_backend == "flash"
    for key, value in [("attention_backend", "flash2"), ("compile_mode", "fast"), ("compile_backend", "tvm")]:
        with pytest.raises(ValueError, match=f"speed.{key}"):
            fast.prepare_network(micro_unet(), SpeedConfig(**{key: value}))


# ------------------------------------------------------------------------------------------------
# Numerics of each fast path
# ------------------------------------------------------------------------------------------------


def test_bf16_autocast_forward_is_close_to_fp32():
    model, inputs = micro_unet().eval(), micro_inputs()
    with torch.no_grad():
        reference = model(**inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**inputs)
    assert low.dtype == torch.float32  # the U-Net returns the dtype of x_t
    relative = (low - reference).norm() / reference.norm()
    assert 0 < relative < 2e-2  # bf16 has an 8-bit mantissa: ~4e-3 per op


def _sdpa_kernels_run(model: nn.Module, inputs: dict) -> set[str]:
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model(**inputs)
    return {event.name for event in prof.events() if "scaled_dot_product" in event.name}


def test_attention_backend_math_equals_default_and_is_the_kernel_that_runs():
    model, inputs = micro_unet().eval(), micro_inputs()
    with torch.no_grad():
        default = model(**inputs)
    layers = [m for m in model.modules() if isinstance(m, (SelfAttention, CrossAttention))]
    assert fast.set_attention_backend(model, "math") == len(layers) == 8  # 3 self-, 5 cross-attention
    assert all(m.sdpa_backends == (torch.nn.attention.SDPBackend.MATH,) for m in layers)
    kernels = _sdpa_kernels_run(model, inputs)
    assert any("math" in name for name in kernels) and not any("flash" in name for name in kernels)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs), default, rtol=1e-5, atol=1e-5)
    fast.prepare_network(model, SpeedConfig(attention_backend="flash"))  # CPU flash kernel
    assert any("flash" in name for name in _sdpa_kernels_run(model, inputs))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs), default, rtol=1e-5, atol=1e-5)


def test_channels_last_gives_the_same_output_and_gradients():
    reference, inputs = micro_unet(), micro_inputs()
    model = fast.prepare_network(copy.deepcopy(reference), SpeedConfig(channels_last=True))
    assert model.init_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.init_conv.weight.is_contiguous()
    seen = []
    model.encoder[1].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    loss, grads = loss_and_grads(model, inputs)
    assert not seen[0].is_contiguous()  # the activations are NHWC from the first convolution on
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    ref_loss, ref_grads = loss_and_grads(reference, inputs)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)
    assert_grads_close(grads, ref_grads, rtol=1e-4, atol=1e-6)


def test_activation_checkpointing_gives_identical_loss_and_gradients_and_recomputes():
    reference, inputs = micro_unet(dropout=0.3).train(), micro_inputs()  # dropout: RNG must be replayed
    model = fast.prepare_network(copy.deepcopy(reference), SpeedConfig(activation_checkpointing=True))
    calls = []
    model.decoder[0].register_forward_pre_hook(lambda *_: calls.append(1))  # recompute stops early
    loss, grads = loss_and_grads(model, inputs, seed=7)
    assert len(calls) == 2  # forward, then recomputed in backward
    ref_loss, ref_grads = loss_and_grads(reference, inputs, seed=7)
    assert torch.equal(loss, ref_loss)
    assert_grads_close(grads, ref_grads, rtol=1e-6, atol=1e-7)
    with torch.no_grad():  # nothing is recomputed without gradients
        model(**inputs)
    assert len(calls) == 3


def test_activation_checkpointing_refuses_a_network_without_support():
    with pytest.raises(ValueError, match="does not support activation checkpointing"):
        fast.prepare_network(nn.Conv2d(3, 3, 1), SpeedConfig(activation_checkpointing=True))


def test_compiled_network_equals_eager_in_forward_and_backward():
    # aot_eager traces the graph (dynamo + AOT autograd) without code generation: fast on a CPU
    reference, inputs = micro_unet(), micro_inputs()
    model = copy.deepcopy(reference)
    speed = SpeedConfig(compile=True, compile_backend="aot_eager", channels_last=True)
    fast.compile_network(fast.prepare_network(model, speed), speed)
    assert model._compiled_call_impl is not None
    assert list(model.state_dict()) == list(reference.state_dict())  # checkpoints keep their keys
    assert copy.deepcopy(model)._compiled_call_impl is None  # the EMA's copy is an eager network
    loss, grads = loss_and_grads(model, inputs)
    ref_loss, ref_grads = loss_and_grads(reference, inputs)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)
    assert_grads_close(grads, ref_grads, rtol=1e-4, atol=1e-6)


def test_dynamo_captures_the_whole_unet_in_one_graph_with_every_fast_path_on():
    speed = SpeedConfig(attention_backend="flash", channels_last=True, activation_checkpointing=True)
    model = fast.prepare_network(micro_unet(), speed)
    explanation = torch._dynamo.explain(model)(**micro_inputs())
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.slow
def test_inductor_compiled_network_equals_eager():
    reference, inputs = micro_unet(), micro_inputs()
    model = copy.deepcopy(reference)
    fast.compile_network(model, SpeedConfig(compile=True))
    loss, grads = loss_and_grads(model, inputs)
    ref_loss, ref_grads = loss_and_grads(reference, inputs)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-6)
    assert_grads_close(grads, ref_grads, rtol=1e-3, atol=1e-5)


def _adamw_run(fused: bool, steps: int = 5) -> list[torch.Tensor]:
    """AdamW on fixed parameters and a fixed gradient sequence (the optimizer alone, no model)."""
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.randn(shape, generator=generator).requires_grad_() for shape in [(64, 32), (32,), (8, 3, 3, 3)]
    ]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, **({"fused": True} if fused else {}))
    for _ in range(steps):
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    return [p.detach() for p in params]


def test_fused_adamw_on_cpu_equals_the_foreach_implementation():
    assert fast.adamw_options(SpeedConfig(), "cuda") == {"fused": True}
    assert fast.adamw_options(SpeedConfig(), "cpu") == {}  # the CPU default is unchanged
    assert fast.adamw_options(SpeedConfig(sync_free_step=True), "cpu") == {"fused": True}
    fused, plain = _adamw_run(True), _adamw_run(False)
    assert (fused[0] - _adamw_run(True, steps=0)[0]).abs().max() > 1e-2  # it moved the weights
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------


class CountingNetwork(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network, self.batches = network, []

    def forward(self, x_t, t, **cond):
        self.batches.append(x_t.shape[0])
        return self.network(x_t, t, **cond)


def _sample(network, steps: int = 4, guidance_scale: float = 3.0, batch: int = 2) -> torch.Tensor:
    inputs = micro_inputs(batch=batch)
    cond = {k: inputs[k] for k in ("text_tokens", "text_mask", "text_pooled")}
    null = {k: v[-1:] for k, v in cond.items()}
    return sample_images(
        network,
        (batch, 3, 8, 8),
        cond,
        null,
        GaussianDiffusion("cosine", 1000, "v"),
        sampler="dpmpp_2m",
        num_steps=steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(0),
    )


def test_guided_sampling_makes_one_network_call_per_step_on_a_doubled_batch():
    network = CountingNetwork(micro_unet().eval())
    _sample(network, steps=5, guidance_scale=3.0, batch=2)
    assert network.batches == [4] * 5
    network.batches.clear()
    _sample(network, steps=5, guidance_scale=1.0, batch=2)  # w = 1: the null half is skipped
    assert network.batches == [2] * 5


def test_sampling_network_falls_back_to_eager_on_cpu():
    model = micro_unet().eval()
    reference = _sample(model)
    fallback = sampling_network(model, SpeedConfig(cuda_graphs_sampling=True), "cpu")
    assert fallback is model  # CUDA graphs need CUDA: the CPU path is the eager path
    assert torch.equal(_sample(fallback), reference)
    prepared = sampling_network(model, SpeedConfig(attention_backend="math", channels_last=True), "cpu")
    assert prepared is model and model.init_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(
        m.sdpa_backends == (torch.nn.attention.SDPBackend.MATH,)
        for m in model.modules()
        if isinstance(m, SelfAttention)
    )
    torch.testing.assert_close(_sample(prepared), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_sampling_network_equals_eager():
    model = micro_unet().eval()
    reference = _sample(model)
    compiled = sampling_network(model, SpeedConfig(compile=True, compile_backend="aot_eager"), "cpu")
    assert compiled is not model
    torch.testing.assert_close(_sample(compiled), reference, rtol=1e-4, atol=1e-5)


def test_graph_replayed_network_returns_a_fresh_copy_of_each_output():
    # the CUDA-graph wrapper on the CPU (no graphs there): it must return what the network does,
    # in a tensor that a later call cannot overwrite
    model = micro_unet().eval()
    wrapped = GraphReplayedNetwork(model)
    wrapped.compiled = model  # stand-in for the CUDA-graph-compiled callable
    inputs = micro_inputs()
    with torch.no_grad():
        first, reference = wrapped(**inputs), model(**inputs)
    assert torch.equal(first, reference)
    assert first.data_ptr() != reference.data_ptr()


# ------------------------------------------------------------------------------------------------
# The NaN guard without host syncs
# ------------------------------------------------------------------------------------------------


def _guarded_run(sync_free: bool, poison_step: int | None, steps: int = 4):
    """Fused AdamW + EMA through StepGuard; step `poison_step` has a NaN loss (and NaN grads)."""
    from diffusers.training_utils import EMAModel

    model = micro_unet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    ema = EMAModel(model.parameters(), decay=0.9, min_decay=0.9, use_ema_warmup=False)
    guard = fast.StepGuard("cpu", sync_free=sync_free)
    for step in range(steps):
        loss, _ = loss_and_grads(model, micro_inputs(seed=step))
        if step == poison_step:
            loss = loss * float("nan")
            for param in model.parameters():
                param.grad.fill_(float("nan"))
        guard.observe(loss)
        guard.observe(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        skipped = guard.step(optimizer)
        fast.masked_ema_update(ema, model.parameters(), skipped)
        optimizer.zero_grad(set_to_none=True)
    return model, optimizer, ema, guard


def _state(model, optimizer, ema) -> list[torch.Tensor]:
    moments = [s[k] for s in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq", "step")]
    return [p.detach() for p in model.parameters()] + moments + list(ema.shadow_params)


def test_sync_free_guard_equals_plain_steps_when_all_is_finite():
    model, optimizer, ema, guard = _guarded_run(sync_free=True, poison_step=None)
    plain = micro_unet()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    for step in range(4):
        loss_and_grads(plain, micro_inputs(seed=step))
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        plain_opt.step()
    for ours, ref in zip([p.detach() for p in model.parameters()], plain.parameters()):
        torch.testing.assert_close(ours, ref.detach(), rtol=0, atol=0)
    assert guard.read() == {"skipped": 0, "consecutive": 0, "longest_run": 0}


@pytest.mark.parametrize("sync_free", [True, False])
def test_guard_skips_a_non_finite_step_exactly(sync_free):
    poisoned = _guarded_run(sync_free, poison_step=2, steps=4)
    # the reference never sees step 2: steps 0, 1 and 3 with the same data, EMA updated 3 times
    model, optimizer, ema, _ = _guarded_run(sync_free, poison_step=None, steps=4)
    reference = micro_unet()
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    from diffusers.training_utils import EMAModel

    ref_ema = EMAModel(reference.parameters(), decay=0.9, min_decay=0.9, use_ema_warmup=False)
    for step in (0, 1, 3):
        loss_and_grads(reference, micro_inputs(seed=step))
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        ref_opt.step()
        ref_ema.step(reference.parameters())
    ours = _state(*poisoned[:3])
    expected = _state(reference, ref_opt, ref_ema)
    assert all(torch.isfinite(t).all() for t in ours)
    for mine, ref in zip(ours, expected):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)
    assert poisoned[3].read() == {"skipped": 1, "consecutive": 0, "longest_run": 1}
    assert not any(torch.equal(a, b) for a, b in zip(_state(model, optimizer, ema)[:3], ours[:3]))


def test_sync_free_guard_needs_the_fused_optimizer():
    model = micro_unet()
    guard = fast.StepGuard("cpu", sync_free=True)
    loss_and_grads(model, micro_inputs())
    with pytest.raises(ValueError, match="fused"):
        guard.step(torch.optim.AdamW(model.parameters()))
