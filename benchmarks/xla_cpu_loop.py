"""Why XLA on a CPU runs the frame loop slowly: a convolution's gradient inside a loop versus unrolled.

    python -m benchmarks.xla_cpu_loop [--steps 16] [--batch 4] [--size 56] [--channels 64]

Plain JAX, no sideways_tf: the gradient of one 3x3 convolution (+ ReLU, squared loss) with
respect to its kernel, accumulated over `--steps` inputs, once inside `jax.lax.scan` and once
unrolled in Python. Both are one jitted XLA program doing the same arithmetic. On XLA:CPU the
loop version is much slower per step, which is what makes the engine's compiled frame loop slow
on CPUs (under JAX, and under TensorFlow with `jit_compile=True`); TensorFlow's default graph
executor does not have it. Needs JAX.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.report import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.random((args.steps, args.batch, args.size, args.size, args.channels), dtype=np.float32))
    w = jnp.asarray(rng.random((3, 3, args.channels, args.channels), dtype=np.float32) * 0.01)

    def loss(w, x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jax.nn.relu(y) ** 2)

    grad = jax.grad(loss)

    def in_scan(w, xs):
        return jax.lax.scan(lambda acc, x: (acc + grad(w, x), None), jnp.zeros_like(w), xs)[0]

    def unrolled(w, xs):
        acc = jnp.zeros_like(w)
        for i in range(xs.shape[0]):
            acc = acc + grad(w, xs[i])
        return acc

    rows = []
    for name, fn in (("lax.scan", in_scan), ("unrolled", unrolled)):
        compiled = jax.jit(fn)
        compiled(w, xs).block_until_ready()
        start = time.perf_counter()
        for _ in range(args.reps):
            compiled(w, xs).block_until_ready()
        ms = (time.perf_counter() - start) / args.reps / args.steps * 1000
        rows.append({"loop": name, "device": jax.devices()[0].platform, "ms_per_step": ms})
    summary = {"scan / unrolled (time per step)": rows[0]["ms_per_step"] / rows[1]["ms_per_step"]}
    report("xla_cpu_loop", rows, ["loop", "device", "ms_per_step"], summary)


if __name__ == "__main__":
    main()
