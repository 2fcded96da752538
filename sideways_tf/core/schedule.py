"""Timing of the pipeline: which activations and gradients are valid at which step.

Units are numbered 0..D-1 here (unit `k` is unit `k + 1` of `docs/rules.md`); steps are 0-based.
Validity only depends on the step and the unit, so the masks (gamma in the papers) are closed
forms rather than flags carried through the state. Derivation (`docs/rules.md`, "When a unit counts"):

* unit k's input at step s was computed from frame `s - k` along the direct path, and from
  later frames along shortcuts, so it is valid iff `s >= k`;
* the top unit's incoming gradient is valid iff its output is: `s >= D - 1`;
* unit k < D-1 sums the messages sent at step s-1 by unit k+1 (and k+2 in Skip-Sideways);
  each is valid iff its sender counted at s-1 (its input is then valid too), which gives
  `s >= 2D - 2 - k` in every mode.
"""

from __future__ import annotations

from typing import NamedTuple

MODES = ("bp", "sideways", "skip_sideways", "fa_skip_sideways")
SKIP_MODES = ("skip_sideways", "fa_skip_sideways")


def first_valid_input_step(unit: int, mode: str) -> int:
    """First step at which unit `unit` (0-based) reads an input computed from real frames."""
    return 0 if mode == "bp" else unit


def first_counted_step(unit: int, depth: int, mode: str) -> int:
    """First step at which unit `unit` (0-based) of a `depth`-unit net counts for its update."""
    return 0 if mode == "bp" else 2 * depth - 2 - unit


def counted_steps(unit: int, depth: int, mode: str, num_frames: int) -> int:
    """Number of steps of a `num_frames` clip that count for unit `unit`'s update."""
    return max(num_frames - first_counted_step(unit, depth, mode), 0)


def min_clip_length(depth: int, mode: str) -> int:
    """Shortest clip in which every unit counts at least once: `2D - 1` (1 for bp)."""
    return 1 if mode == "bp" else 2 * depth - 1


def output_latency(depth: int, mode: str) -> int:
    """Steps between a frame entering unit 0 and its prediction leaving the top: `D - 1`."""
    return 0 if mode == "bp" else depth - 1


class Rule(NamedTuple):
    """How one call trains or predicts: the single place that decides it.

    Attributes:
      mode: the model's mode.
      synchronous: True for exact per-frame backprop (`"bp"`, or the exact reference of a
        sideways mode); False for the depth-parallel pipeline.
      latency: steps between frame j entering unit 0 and its prediction leaving the top:
        the prediction at step s is for frame `s - latency`.
      shortcuts: whether units k >= 2 read `tau(h_{k-2})`.
      shortcut_gradients: whether gradients flow back through the shortcuts.
    """

    mode: str
    synchronous: bool
    latency: int
    shortcuts: bool
    shortcut_gradients: bool

    def first_counted_step(self, unit: int, depth: int) -> int:
        """First step at which `unit` (0-based) counts for its update under this rule."""
        return first_counted_step(unit, depth, "bp" if self.synchronous else self.mode)


def rule(mode: str, depth: int, exact: bool = False, training: bool = True) -> Rule:
    """The rule a call runs.

    Training in `"bp"`, or asking for the exact reference (`exact=True`), runs exact per-frame
    backprop of the network (with its shortcuts in the skip modes); every other training call
    runs the pipeline of `mode`. Inference runs the pipeline in the sideways modes and the
    per-frame network in `"bp"`.

    Args:
      mode: one of `MODES`.
      depth: D, the number of units.
      exact: the exact reference of `mode` instead of its rule (training only).
      training: whether gradients are computed.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}.")
    synchronous = mode == "bp" or (exact and training)
    return Rule(
        mode=mode,
        synchronous=synchronous,
        latency=output_latency(depth, "bp" if synchronous else mode),
        shortcuts=mode in SKIP_MODES,
        shortcut_gradients=mode == "skip_sideways",
    )
