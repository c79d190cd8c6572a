"""The numeric path chosen at run time from what the processor has: precision and SDPA kernels.

Owns `native_bf16_cpu`, `resolve_mixed_precision` ("auto" -> "bf16" or "no") and
`resolve_attention_backend` ("auto" -> a kernel name or torch's own choice). Measured on the
project's 2-core hosts (docs/performance.md, benchmarks/unet_speed.py): on a CPU with AMX or
AVX-512 BF16, bf16 autocast trains the tiny U-Net 1.8x (Intel, AMX) or 1.3x (AMD Zen 4) faster
than fp32; on a CPU without them bf16 is emulated and 5-10x slower. Under CPU bf16 torch's
flash-attention kernel is slower than the plain "math" one on these short sequences (64 pixels,
24 tokens), so "auto" picks math there. Hosts change: the choice is made per process, never stored.
"""

from __future__ import annotations

import functools

import torch

MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")


@functools.cache
def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 natively (AMX tiles or AVX-512 BF16 instructions)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_mixed_precision(name: str, device_type: str) -> str:
    """`train.mixed_precision` for accelerate: "auto" -> "bf16" where it is native, else "no".

    CUDA: bf16 when the GPU supports it (Ampere and newer). CPU: bf16 when `native_bf16_cpu()`.
    Any other name is returned unchanged after a check; ValueError names the allowed ones.
    """
    if name not in MIXED_PRECISIONS:
        raise ValueError(
            f"train.mixed_precision: {name!r} is unknown; allowed: {', '.join(MIXED_PRECISIONS)}"
        )
    if name != "auto":
        return name
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device_type == "cpu":
        return "bf16" if native_bf16_cpu() else "no"
    return "no"


def resolve_attention_backend(name: str, precision: str, device_type: str) -> str:
    """`speed.attention_backend` to apply: "auto" becomes "math" under CPU bf16 (faster there)."""
    if name == "auto" and device_type == "cpu" and precision == "bf16":
        return "math"
    return name
