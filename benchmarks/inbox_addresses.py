"""Does a group's step cost the host more when its inbox arrives in new buffers each frame? (one device)

    python -m benchmarks.inbox_addresses [--batch 8 32] [--resolution 112] [--frames 64] [--png PATH]

On several GPUs each group's step reads pieces that `device_put` has just written into new
buffers, so the buffer addresses its CUDA graph was recorded with change every frame. Here one
device runs a VGG-8-like first group (4 conv layers, 2 pools; forward and the pull-back of a
message, gradients summed into a donated carry) `--frames` times, compiled with the runtime's
options (`core.backends.jax_graphs.compiler_options`), its message taken:

    fixed           from the same buffer every call (a step timed alone)
    ring            from a ring of 5 buffers, a new address every call (as the runtime's inbox)
    ring_donated    the same, the message donated and the output written into it (the runtime's
                    spare pieces)
    receive         copied first into one donated slot by a small program, the step reading the
                    slot (fixed addresses for the big step, one more launch)
    receive_donated the same, the slot donated to the step and its output becoming the slot

Per variant: the host's time per call (dispatch only) and the wall time per call (best of 5).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.report import report  # noqa: E402
from sideways_tf.core.backends.jax_graphs import compiler_options  # noqa: E402

VARIANTS = ("fixed", "ring", "ring_donated", "receive", "receive_donated")
CHANNELS = ((3, 64), (64, 128), (128, 256), (256, 256))
RING = 5


def _net(params, x):
    """`[B, R, R, 3]` -> `[B, R/4, R/4, 256]`: 3x3 convolutions with ReLU, a 2x2 max pool after the first two."""
    for i, w in enumerate(params):
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        if i < 2:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return x


def measure(batch: int, resolution: int, frames: int) -> list[dict]:
    """One row per variant: host and wall ms per call of the step on `jax.devices()[0]`."""
    key = jax.random.PRNGKey(0)
    params = [0.05 * jax.random.normal(jax.random.fold_in(key, i), (3, 3, a, b)) for i, (a, b) in enumerate(CHANNELS)]
    frame = jax.random.normal(key, (batch, resolution, resolution, 3))
    shape = jax.eval_shape(_net, params, frame).shape

    def step(params, carry, message):
        out, pull_back = jax.vjp(lambda p: _net(p, frame), params)
        (grads,) = pull_back(message)
        return {"acc": [a + g for a, g in zip(carry["acc"], grads, strict=True)], "s": carry["s"] + 1}, out

    options = compiler_options(jax.devices()[0]) or None
    keep = jax.jit(step, donate_argnums=(1,), compiler_options=options)
    donate = jax.jit(step, donate_argnums=(1, 2), compiler_options=options)
    # The slot's buffer receives the new message (the output aliases the donated slot).
    receive = jax.jit(lambda slot, x: x + 0 * slot[0, 0, 0, 0], donate_argnums=(0,), compiler_options=options)

    def call(variant, i, carry, slot, ring):
        if variant == "fixed":
            return keep(params, carry, ring[0])[0], slot
        if variant == "ring":
            return keep(params, carry, ring[i % RING])[0], slot
        if variant == "ring_donated":
            carry, ring[i % RING] = donate(params, carry, ring[i % RING])
            return carry, slot
        slot = receive(slot, ring[i % RING])
        return donate(params, carry, slot) if variant == "receive_donated" else (keep(params, carry, slot)[0], slot)

    rows = []
    for variant in VARIANTS:
        carry = {"acc": [jnp.zeros_like(p) for p in params], "s": jnp.zeros((), jnp.int32)}
        slot = jnp.zeros(shape)
        ring = [jax.random.normal(jax.random.fold_in(key, 100 + i), shape) for i in range(RING)]
        for i in range(8):
            carry, slot = call(variant, i, carry, slot, ring)
        jax.block_until_ready((carry, slot))
        wall, host = float("inf"), float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for i in range(frames):
                carry, slot = call(variant, i, carry, slot, ring)
            dispatched = time.perf_counter()
            jax.block_until_ready((carry, slot))
            wall = min(wall, (time.perf_counter() - start) / frames)
            host = min(host, (dispatched - start) / frames)
        rows.append({"variant": variant, "B": batch, "res": resolution, "host_ms": 1e3 * host, "wall_ms": 1e3 * wall})
    return rows


def plot(path: str, rows: list[dict]) -> None:
    """Host and wall ms per call, per variant, one group of bars per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["B"] for r in rows})
    figure, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 3.6), squeeze=False)
    for axis, batch in zip(axes[0], batches, strict=True):
        mine = [r for r in rows if r["B"] == batch]
        x = range(len(mine))
        axis.bar([i - 0.2 for i in x], [r["host_ms"] for r in mine], 0.4, label="host (dispatch)")
        axis.bar([i + 0.2 for i in x], [r["wall_ms"] for r in mine], 0.4, label="wall")
        axis.set_xticks(list(x), [r["variant"].replace("_", "\n") for r in mine], fontsize=8)
        axis.set_ylabel("ms per call")
        axis.set_title(f"B = {batch}, {mine[0]['res']}x{mine[0]['res']}")
        axis.set_ylim(0, 1.3 * max(r["wall_ms"] for r in mine))
        axis.legend(fontsize=8, ncol=2, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--frames", type=int, default=64, help="calls per timed run")
    parser.add_argument("--png", help="also save a plot here")
    args = parser.parse_args()
    rows = [row for batch in args.batch for row in measure(batch, args.resolution, args.frames)]
    summary = {"device": str(jax.devices()[0])}
    for batch in args.batch:
        fixed = next(r for r in rows if r["B"] == batch and r["variant"] == "fixed")
        for r in rows:
            if r["B"] == batch and r is not fixed:
                summary[f"B={batch} {r['variant']}: host ms over fixed"] = r["host_ms"] - fixed["host_ms"]
    report("inbox_addresses", rows, ["variant", "B", "res", "host_ms", "wall_ms"], summary)
    if args.png:
        plot(args.png, rows)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
