"""The denoiser network a pipeline samples with: eager, compiled, or replayed as a CUDA graph.

Small-batch sampling is bound by kernel launches, not arithmetic: a 25-step guided sample of the
base stage at batch 1 launches thousands of small kernels per step. On CUDA, `cuda_graphs_sampling`
compiles the network with mode "reduce-overhead" (inductor's CUDA-graph trees): each shape
(batch 2B for guidance, B without) is captured once and then replayed with one launch per step.
Everywhere else the network is returned as it is (or compiled with `speed.compile`), so the CPU
path is the eager path. Weights are shared with the given network, never copied.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from imagegen.config import SpeedConfig
from imagegen.nn import set_attention_backend


class GraphReplayedNetwork(nn.Module):
    """`network` compiled with CUDA graphs; each call starts a new graph step and returns a copy
    of the output (a graph's output buffer is overwritten by the next replay)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.compiled = torch.compile(network, mode="reduce-overhead", dynamic=False)

    def forward(self, *args, **kwargs) -> Tensor:
        torch.compiler.cudagraph_mark_step_begin()  # the previous call's outputs are no longer read
        return self.compiled(*args, **kwargs).clone()


def sampling_network(
    network: nn.Module, speed: SpeedConfig, device: torch.device | str
) -> Callable[..., Tensor] | nn.Module:
    """The callable to hand to `sample_images` in place of `network` (eval mode, no grad).

    First, in place: speed.attention_backend (SDPA kernels) and speed.channels_last (NHWC
    weights). Then: on CUDA with speed.cuda_graphs_sampling, `GraphReplayedNetwork(network)`;
    otherwise, with speed.compile, `torch.compile(network)` (speed.compile_mode /
    compile_backend); otherwise the network itself. The first call of a compiled network for
    each shape compiles (seconds to minutes); time later calls.
    """
    device = torch.device(device)
    if speed.attention_backend != "auto":
        set_attention_backend(network, speed.attention_backend)
    if speed.channels_last:
        network.to(memory_format=torch.channels_last)
    if speed.cuda_graphs_sampling and device.type == "cuda":
        return GraphReplayedNetwork(network)
    if speed.compile:
        inductor = speed.compile_backend == "inductor"
        options = (
            {"mode": None if speed.compile_mode == "default" else speed.compile_mode} if inductor else {}
        )
        return torch.compile(network, backend=speed.compile_backend, dynamic=False, **options)
    return network
