"""CUDA graphs that take convolutions: the XLA options of the package's compiled functions on NVIDIA GPUs.

XLA:GPU launches a program's kernels from the host, except the ones it records into CUDA graphs,
and by default it leaves convolutions out of those. A frame-by-frame rule runs a `lax.scan` (or,
on per-device programs, one step call per frame) whose body is hundreds of short kernels for a
small network at a small batch, so the launches, not the kernels, set the pace. Measured on an
H200: a VGG-16 group's step launched in 0.64 ms instead of 1.13 ms; one clip's gradients of small
networks at 112x112, B = 8, ran 1.07-1.42x as fast (3.0x on a host that launched more slowly), at
B = 32 1.02-1.04x; none ran slower (`benchmarks/scan_graphs.py`).

Where XLA reuses compiled or autotuned convolutions from an earlier process (JAX's persistent
compilation cache, XLA's autotuning cache), a cached convolution captured into a CUDA graph failed
on H200s (cuDNN status 5003): there the graphs leave convolutions out. A user's own `XLA_FLAGS`
setting of an option wins over ours.

Keras' `jax.jit` of `fit`'s, `evaluate`'s and `predict`'s steps takes no options, so on one device
the package compiles those steps itself (`jax_keras.own_step`); under a `keras.distribution` they
get the options only from `XLA_FLAGS` set before JAX starts (`xla_flags`, `docs/backends.md`).
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import jax

GPU_GRAPH_OPTIONS = {"xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONVOLUTION",
                     "xla_gpu_graph_min_graph_size": 1}
CACHED_GPU_GRAPH_OPTIONS = {**GPU_GRAPH_OPTIONS, "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL"}
CACHE_FLAGS = ("xla_gpu_per_fusion_autotune_cache_dir", "xla_gpu_load_autotune_results_from")


def compiler_options(device=None) -> dict:
    """The XLA options of a compiled function on `device` (default: JAX's default device).

    On NVIDIA GPUs `GPU_GRAPH_OPTIONS` (`CACHED_GPU_GRAPH_OPTIONS` where compilations or autotuning
    results are cached), less any option `XLA_FLAGS` sets; elsewhere none.
    """
    device = default_device() if device is None else device
    if device.platform != "gpu" or "nvidia" not in device.device_kind.lower():
        return {}
    flags = os.environ.get("XLA_FLAGS", "")
    cached = bool(jax.config.jax_compilation_cache_dir) or any(flag in flags for flag in CACHE_FLAGS)
    options = CACHED_GPU_GRAPH_OPTIONS if cached else GPU_GRAPH_OPTIONS
    return {name: value for name, value in options.items() if name not in flags}


def default_device():
    """The device a `jax.jit` call without placed arguments runs on (`jax_default_device`, else the first)."""
    device = jax.config.jax_default_device
    if device is None or isinstance(device, str):
        return jax.devices(device)[0]
    return device


def traced(tree) -> bool:
    """Whether `tree` holds a tracer (the call runs inside a trace)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


class GraphJit:
    """`jax.jit(fn, **jit_kwargs)` compiled with `compiler_options(device)`, except when called inside
    another trace (JAX takes compiler options on a top-level jit only): then with XLA's defaults.

    `lower` lowers the top-level variant; `__wrapped__` is `fn`.
    """

    def __init__(self, fn: Callable, device=None, **jit_kwargs):
        functools.update_wrapper(self, fn)
        self.plain = jax.jit(fn, **jit_kwargs)
        options = compiler_options(device)
        self.graphs = jax.jit(fn, compiler_options=options, **jit_kwargs) if options else self.plain

    def __call__(self, *args, **kwargs):
        return self.variant(traced((args, kwargs)))(*args, **kwargs)

    def variant(self, nested: bool) -> Callable:
        """The jit to call: without options when `nested` (inside another trace). For callers that
        know this more cheaply than by looking through every argument (a step called every frame)."""
        return self.plain if nested else self.graphs

    def lower(self, *args, **kwargs):
        """The top-level variant's `jax.jit(...).lower`."""
        return self.graphs.lower(*args, **kwargs)


def xla_flags() -> str:
    """`GPU_GRAPH_OPTIONS` as `XLA_FLAGS` (for what Keras compiles itself, such as `fit`'s step)."""
    return " ".join(f"--{name}={value}" for name, value in GPU_GRAPH_OPTIONS.items())
