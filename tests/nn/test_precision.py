"""The run-time numeric path: 'auto' mixed precision and the CPU attention kernel."""

from __future__ import annotations

import pytest
import torch

from imagegen.nn import precision
from imagegen.nn.precision import resolve_attention_backend, resolve_mixed_precision


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "no")])
def test_auto_is_bf16_exactly_where_the_cpu_computes_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    assert resolve_mixed_precision("auto", "cpu") == expected


def test_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch):
    for supported, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolve_mixed_precision("auto", "cuda") == expected


@pytest.mark.parametrize("name", ["no", "bf16", "fp16"])
def test_an_explicit_precision_is_kept_whatever_the_machine(monkeypatch, name):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert resolve_mixed_precision(name, "cpu") == name


def test_an_unknown_precision_names_the_key_and_the_allowed_values():
    with pytest.raises(ValueError, match=r"train\.mixed_precision: 'fp8'.*auto, no, bf16, fp16"):
        resolve_mixed_precision("fp8", "cpu")


def test_native_bf16_reads_the_cpu_feature_probes(monkeypatch):
    precision.native_bf16_cpu.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.native_bf16_cpu() is True
    precision.native_bf16_cpu.cache_clear()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert precision.native_bf16_cpu() is False
    precision.native_bf16_cpu.cache_clear()


def test_cpu_bf16_picks_the_math_kernel_and_nothing_else_changes():
    assert resolve_attention_backend("auto", "bf16", "cpu") == "math"
    assert resolve_attention_backend("auto", "no", "cpu") == "auto"
    assert resolve_attention_backend("auto", "bf16", "cuda") == "auto"
    assert resolve_attention_backend("flash", "bf16", "cpu") == "flash"  # an explicit choice wins
