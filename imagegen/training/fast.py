"""Training fast paths, switched by the `speed` config section (docs/performance.md).

Owns what turns a built network and its optimizer into the fast versions of themselves, each
behind a flag whose default is the plain eager fp32 path:

- `prepare_network`: SDPA kernel choice (flash / memory-efficient / cuDNN / math), channels-last
  weights and inputs, activation checkpointing of every U-Net level; before `accelerator.prepare`.
- `compile_network`: `torch.compile` of the forward, in place (state-dict keys and the module's
  type are unchanged, so checkpoints, EMA copies and `unwrap_model` are unaffected); after it.
- `adamw_options`: the fused AdamW kernel (one kernel for all parameters; CUDA and CPU).
- `StepGuard`: the NaN/inf guard of one optimizer step. With `sync_free` it never reads a device
  value on the host: the non-finite flag is handed to the fused AdamW kernel as `found_inf` (the
  mechanism of torch's GradScaler), which leaves weights, moments and step counts untouched, and
  `masked_ema_update` leaves the EMA untouched; counts are read only at log steps (`read`).

bf16 autocast is `train.mixed_precision` (accelerate; "auto" is resolved per machine by
`imagegen.nn.precision`); here it only picks the CPU attention kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from imagegen.config import SpeedConfig
from imagegen.nn import ATTENTION_BACKENDS, set_attention_backend
from imagegen.nn.precision import resolve_attention_backend

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


def check_speed(speed: SpeedConfig) -> SpeedConfig:
    """ValueError naming the `speed.*` key whose value is not one of the allowed names."""
    choices = {
        "compile_mode": (speed.compile_mode, COMPILE_MODES),
        "compile_backend": (speed.compile_backend, COMPILE_BACKENDS),
        "attention_backend": (speed.attention_backend, tuple(ATTENTION_BACKENDS)),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"speed.{key}: {value!r} is unknown; allowed: {', '.join(allowed)}")
    return speed


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


def to_channels_last(network: nn.Module) -> nn.Module:
    """In place: the 4-D weights (convolutions) of `network` in NHWC memory format.

    Values are unchanged; only strides differ. A convolution with channels-last weights returns a
    channels-last output whatever its input's layout, so the first convolution converts the
    activations and every later layer sees NHWC: cuDNN runs without layout transposes, and the
    attention layers' "b c h w -> b (h w) c" becomes a free view.
    """
    return network.to(memory_format=torch.channels_last)


def enable_activation_checkpointing(network: nn.Module) -> nn.Module:
    """In place: recompute activations in backward instead of storing them (diffusers' interface).

    EfficientUNet checkpoints each level (DBlock, middle, UBlock). Same loss and gradients, less
    memory, about one more forward of compute. ValueError for a network without support.
    """
    if not getattr(network, "_supports_gradient_checkpointing", False):
        raise ValueError(
            f"speed.activation_checkpointing: {type(network).__name__} does not support activation "
            "checkpointing (only diffusers ModelMixin networks such as EfficientUNet do)"
        )
    network.enable_gradient_checkpointing(gradient_checkpointing_func=_checkpoint)
    return network


def _checkpoint(module: nn.Module, *inputs):
    """module(*inputs) through non-reentrant torch.utils.checkpoint (traceable by torch.compile)."""
    return torch.utils.checkpoint.checkpoint(module.__call__, *inputs, use_reentrant=False)


def prepare_network(
    network: nn.Module, speed: SpeedConfig, precision: str = "no", device_type: str = "cpu"
) -> nn.Module:
    """Apply the layout and memory fast paths of `speed` to `network`, in place; returns it.

    Call after building the network and before `accelerator.prepare` (which moves it): SDPA
    backend (`attention_backend`; "auto" is "math" under CPU bf16, `resolve_attention_backend`),
    `channels_last`, `activation_checkpointing`. `precision` is the resolved mixed precision
    ("no" | "bf16" | "fp16") the network will train under on `device_type`. With the defaults
    the network is returned untouched.
    """
    check_speed(speed)
    backend = resolve_attention_backend(speed.attention_backend, precision, device_type)
    if backend != "auto":
        set_attention_backend(network, backend)
    if speed.channels_last:
        to_channels_last(network)
    if speed.activation_checkpointing:
        enable_activation_checkpointing(network)
    return network


def compile_network(network: nn.Module, speed: SpeedConfig, mode: str | None = None) -> nn.Module:
    """`torch.compile` the forward of `network` in place when speed.compile; returns it.

    Call after `accelerator.prepare` (compiling the DDP wrapper lets dynamo split graphs at
    gradient buckets). Shapes are static (dynamic=False): a new batch size or resolution compiles
    once more. `mode` overrides speed.compile_mode; modes apply to the inductor backend only.
    """
    check_speed(speed)
    if not speed.compile:
        return network
    mode = mode or speed.compile_mode
    options = {"mode": None if mode == "default" else mode} if speed.compile_backend == "inductor" else {}
    network.compile(backend=speed.compile_backend, dynamic=False, **options)
    return network


# ------------------------------------------------------------------------------------------------
# The optimizer
# ------------------------------------------------------------------------------------------------


def adamw_options(speed: SpeedConfig, device: torch.device | str) -> dict[str, bool]:
    """Keyword arguments for `torch.optim.AdamW` on `device`: {"fused": True} or {}.

    The fused kernel updates every parameter in one launch (CUDA; CPU since torch 2.4) and is the
    one that honours `found_inf`, so `sync_free_step` always uses it. On CPU it is used only with
    sync_free_step, leaving the CPU default as it was.
    """
    device = torch.device(device)
    fused = speed.sync_free_step or (speed.fused_adamw and device.type == "cuda")
    return {"fused": True} if fused else {}


def _inner_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside an accelerate `AcceleratedOptimizer` (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def _check_fused(optimizer: torch.optim.Optimizer) -> None:
    if not all(group.get("fused") for group in optimizer.param_groups):
        raise ValueError(
            "speed.sync_free_step needs a fused optimizer (torch.optim.AdamW(..., fused=True)): only the "
            "fused kernels skip a step on the device's found_inf flag"
        )


class StepGuard:
    """NaN/inf guard of optimizer steps: a step whose losses or gradient norm are not all finite
    changes no weight and no optimizer state.

    Per step: `observe(loss)` for each micro-batch, `observe(grad_norm)` after clipping, then
    `skipped = guard.step(optimizer)`. `skipped` is a 0-d float tensor on the device, 1.0 when
    the step was skipped.

    sync_free=False: `step` reads the flag on the host once (one sync per optimizer step, not
    one per micro-batch) and calls optimizer.step() only when it is 0; `last_ok` holds the result.
    sync_free=True: nothing is read on the host. The flag goes to the fused AdamW kernel as
    `found_inf`, which skips the update and restores its step counts; the LR scheduler and the
    host's step counter advance as for any step (GradScaler's semantics). `read()` returns the
    skipped-step counts at log steps, the only place the host waits for the device.

    Args:
        device: where the flags live (the training device).
        sync_free: see above.
        reduce_sum: sums a 0-d tensor over processes (e.g. `lambda t: accelerator.reduce(t, "sum")`),
            so that every process skips the same steps; None for one process.
    """

    def __init__(
        self,
        device: torch.device | str,
        sync_free: bool = False,
        reduce_sum: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.device, self.sync_free, self.reduce_sum = torch.device(device), sync_free, reduce_sum
        self._bad = torch.zeros((), device=self.device)  # > 0 once a non-finite value was seen
        self._counts = torch.zeros(3, dtype=torch.long, device=self.device)  # total, run, longest run
        self.last_ok: bool | None = None

    def observe(self, value: Tensor) -> None:
        """Record whether every element of `value` (a loss, a gradient norm) is finite. No sync."""
        nonfinite = (~torch.isfinite(value.detach()).all()).to(self._bad.dtype)
        self._bad = torch.maximum(self._bad, nonfinite)

    def step(self, optimizer) -> Tensor:
        """optimizer.step() unless a non-finite value was observed since the last step.

        Returns found_inf, a 0-d float32 tensor: 1.0 if this step was skipped, else 0.0.
        """
        found_inf = self._bad if self.reduce_sum is None else self.reduce_sum(self._bad)
        found_inf = (found_inf > 0).float()  # [] float32, as the fused kernels expect
        self._bad = torch.zeros((), device=self.device)
        if self.sync_free:
            inner = _inner_optimizer(optimizer)
            _check_fused(inner)
            inner.found_inf = found_inf  # read by the fused kernel (as GradScaler sets it)
            try:
                optimizer.step()
            finally:
                del inner.found_inf
        else:
            self.last_ok = not bool(found_inf.item())  # the one host read of this step
            if self.last_ok:
                optimizer.step()
        self._count(found_inf)
        return found_inf

    def _count(self, found_inf: Tensor) -> None:
        bad = found_inf.long()
        total, run, longest = self._counts.unbind()
        run = (run + 1) * bad  # consecutive skipped steps, 0 after a good one
        self._counts = torch.stack([total + bad, run, torch.maximum(longest, run)])

    def read(self) -> dict[str, int]:
        """Skipped steps so far: {"skipped", "consecutive", "longest_run"} (one host read)."""
        total, run, longest = self._counts.tolist()
        return {"skipped": total, "consecutive": run, "longest_run": longest}


@torch.no_grad()
def masked_ema_update(ema_model, parameters: Iterable[nn.Parameter], skipped: Tensor) -> None:
    """One update of a diffusers `EMAModel` that is the identity when `skipped` is 1, without a sync.

    shadow <- shadow + (1 - decay) * (1 - skipped) * (param - shadow): the same average as
    `EMAModel.step` (its decay warm-up counter advances either way), with the weight on the device.
    """
    parameters = list(parameters)
    ema_model.optimization_step += 1
    decay = ema_model.get_decay(ema_model.optimization_step)
    ema_model.cur_decay_value = decay
    weight = (1.0 - decay) * (1.0 - skipped.float())  # [] on the device
    pairs = [(s, p) for s, p in zip(ema_model.shadow_params, parameters)]
    trained = [(s, p) for s, p in pairs if p.requires_grad]
    frozen = [(s, p) for s, p in pairs if not p.requires_grad]
    if trained:
        shadows = [s for s, _ in trained]
        targets = [p.to(s.dtype) for s, p in trained]
        torch._foreach_lerp_(shadows, targets, weight.to(shadows[0].dtype))
    for shadow, param in frozen:
        shadow.copy_(param)
