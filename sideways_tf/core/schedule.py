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

from typing import Iterator, NamedTuple, Optional

from sideways_tf.core import text_table

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
      through_time: exact backprop through time of the pipeline's own network (the exact
        reference of a skip mode, `core.through_time`); `synchronous` is then False.
      masking: the papers' mask gamma (below). False, an ablation of the pipelined rules: every
        step counts for every unit and updates its state, the zero-filled warm-up included.
    """

    mode: str
    synchronous: bool
    latency: int
    shortcuts: bool
    shortcut_gradients: bool
    through_time: bool = False
    masking: bool = True

    def first_counted_step(self, unit: int, depth: int) -> int:
        """First step at which `unit` (0-based) counts for its update under this rule."""
        if not self.masking:
            return 0
        return first_counted_step(unit, depth, "bp" if self.synchronous else self.mode)

    def first_valid_input_step(self, unit: int) -> int:
        """First step from which `unit` (0-based) keeps the state its input gives it (batch norm's statistics)."""
        if not self.masking:
            return 0
        return first_valid_input_step(unit, "bp" if self.synchronous else self.mode)


def rule(mode: str, depth: int, exact: bool = False, training: bool = True, masking: bool = True) -> Rule:
    """The rule a call runs.

    Training in `"bp"`, or asking for the exact reference (`exact=True`) of `"sideways"`, runs
    exact per-frame backprop of the network; the exact reference of a skip mode is exact backprop
    through time of the network its pipeline computes (whose shortcuts read a later frame than
    the direct path, `core.through_time`); every other training call runs the pipeline of
    `mode`. Inference runs the pipeline in the sideways modes and the per-frame network in `"bp"`.

    Args:
      mode: one of `MODES`.
      depth: D, the number of units.
      exact: the exact reference of `mode` instead of its rule (training only).
      training: whether gradients are computed.
      masking: False: the pipelined training rule without the mask gamma (`Rule.masking`); the
        exact references and inference keep it.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}.")
    through_time = exact and training and mode in SKIP_MODES
    synchronous = mode == "bp" or (exact and training and not through_time)
    return Rule(
        mode=mode,
        synchronous=synchronous,
        latency=output_latency(depth, "bp" if synchronous else mode),
        shortcuts=mode in SKIP_MODES,
        shortcut_gradients=mode == "skip_sideways",
        through_time=through_time,
        masking=masking or synchronous or through_time or not training,
    )


class Work(NamedTuple):
    """What one unit does at one step of a clip (`timeline`).

    Attributes:
      frame: the frame its direct input comes from, or None before any real frame reaches it.
      shortcut_frame: the frame of its shortcut input (Skip-Sideways, units k >= 2), or None.
      counts: whether this step counts for its update.
    """

    frame: Optional[int]
    shortcut_frame: Optional[int]
    counts: bool


def timeline(rule: Rule, depth: int, num_frames: int) -> list[list[Work]]:
    """Which unit works on which frame at each step of a clip, and whether the step counts.

    Per step s (0..T-1), per unit k (0..D-1): in the pipeline unit k's direct input was computed
    from frame `s - k` (it left unit 0 k steps earlier) and its shortcut input from frame
    `s - k + 1` (one unit skipped, one step fewer), and so in a skip mode's exact reference through
    time; in exact per-frame backprop (`rule.synchronous`) every unit works on frame s. The counts
    follow `Rule.first_counted_step`, the closed form the engine's masks use.

    A 3-unit Sideways model over 6 frames (`format_timeline`; `*`: the step counts; in
    Skip-Sideways unit 2 reads `0+1`, `1+2`, ...: its direct and shortcut frames):

        step  unit 0  unit 1  unit 2
        0     0       -       -
        1     1       0       -
        2     2       1       0*
        3     3       2*      1*
        4     4*      3*      2*
        5     5*      4*      3*
    """
    rows = []
    for s in range(num_frames):
        row = []
        for k in range(depth):
            lag = 0 if rule.synchronous else k  # the shortcut skipped a unit: one step less
            frame = s - lag if s >= lag else None
            shortcut = s - max(lag - 1, 0) if rule.shortcuts and k >= 2 and s >= lag - 1 else None
            row.append(Work(frame, shortcut, s >= rule.first_counted_step(k, depth)))
        rows.append(row)
    return rows


def format_timeline(rule: Rule, depth: int, num_frames: int, first_unit: int = 0) -> str:
    """`timeline` as a table: a row per step, a column per unit (numbered from `first_unit`), each
    cell the frame (with its shortcut's, `direct+shortcut`) and `*` where the step counts; `-`
    before the first real frame."""
    def cell(work: Work) -> str:
        if work.frame is None:
            return "-"
        text = str(work.frame) if work.shortcut_frame is None else f"{work.frame}+{work.shortcut_frame}"
        return text + ("*" if work.counts else "")

    header = ["step"] + [f"unit {k + first_unit}" for k in range(depth)]
    rows = [[str(s)] + [cell(w) for w in row] for s, row in enumerate(timeline(rule, depth, num_frames))]
    return text_table.align([header] + rows)


def gpipe_frame(tick, group, num_groups: int, num_frames: int, backward: bool):
    """The frame (micro-batch) GPipe's `group` works on at `tick` of a phase (ints or traced arrays).

    Forward: frame `t - g`; backward: `M - 1 - (t - (S - 1 - g))` (the top group starts with the
    last frame). Valid where `0 <= frame < M`; each phase lasts `M + S - 1` ticks.
    """
    return (num_frames - 1) - (tick - (num_groups - 1 - group)) if backward else tick - group


def clock_cycles(num_frames: int, num_groups: int) -> Iterator[list[tuple[int, int]]]:
    """GPipe's ticks, forward phase then backward phase: per tick, the `(frame, group)` pairs at work
    (`gpipe_frame`). For M = 3 frames on S = 2 groups:

        forward   t=0: (0,0)   t=1: (1,0) (0,1)   t=2: (2,0) (1,1)   t=3: (2,1)
        backward  t=0: (2,1)   t=1: (1,1) (2,0)   t=2: (0,1) (1,0)   t=3: (0,0)
    """
    for backward in (False, True):
        for t in range(num_frames + num_groups - 1):
            order = reversed(range(num_groups)) if backward else range(num_groups)
            pairs = [(gpipe_frame(t, g, num_groups, num_frames, backward), g) for g in order]
            yield [(m, g) for m, g in pairs if 0 <= m < num_frames]
