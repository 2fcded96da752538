"""Whether a claim holds: comparisons of per-seed numbers, as pure functions.

A claim is a list of checks; each compares two operands, each of which stands for one number per
seed: a run's metric (`Metric("skip", "accuracy")`), a constant (chance), or the paired
difference of two operands (how much a rule loses from one setting to another, seed by seed).

* `Greater(a, b)`: a is above b by more than the noise: `mean(a) - mean(b) > max(margin, 2 se)`,
  with `se` the standard error of the difference of the means.
* `Similar(a, b)`: `|mean(a) - mean(b)| <= tolerance` (an absolute tolerance: with three seeds,
  "not shown different" would be too easy to pass).
* `AtLeast(a, b)`: a is not below b by more than `tolerance`.

Each check has one of three verdicts:

* *holds*: as above;
* *contradicted*: the opposite is shown beyond twice the standard error (for `Greater`, b above a
  by more than 2 se; for `Similar`, the means apart by more than the tolerance plus 2 se; for
  `AtLeast`, a below b by more than the tolerance plus 2 se);
* *not shown at this power*: neither. The outcome gives the difference and the seeds per arm at
  which the same difference, with the same spread, would decide the check (None where no number
  of seeds would: a `Greater` whose difference lies between 0 and its margin).

A claim holds when every check holds, is contradicted when one of its checks is, and is otherwise
not shown.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence, Union

HOLDS = "holds"
CONTRADICTED = "contradicted"
NOT_SHOWN = "not shown at this power"
VERDICTS = (HOLDS, CONTRADICTED, NOT_SHOWN)


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric of one arm's runs, one value per seed (e.g. `Metric("sideways", "accuracy")`)."""

    arm: str
    metric: str

    def __str__(self) -> str:
        return f"{self.arm} {self.metric}"


@dataclasses.dataclass(frozen=True)
class Difference:
    """`left - right`, paired seed by seed (seed k of one arm against seed k of the other)."""

    left: "Operand"
    right: "Operand"

    def __str__(self) -> str:
        return f"({self.left} - {self.right})"


Operand = Union[Metric, Difference, float, int]
Values = Mapping[tuple[str, str], Sequence[float]]
"""`{(arm, metric): [value per seed]}`, seeds in the same order for every arm."""


def values_of(operand: Operand, values: Values) -> list[float]:
    """The per-seed values an operand stands for (a constant: one value)."""
    if isinstance(operand, Metric):
        key = (operand.arm, operand.metric)
        if key not in values:
            raise KeyError(f"no values for arm {operand.arm!r}, metric {operand.metric!r}")
        return [float(v) for v in values[key]]
    if isinstance(operand, Difference):
        left, right = values_of(operand.left, values), values_of(operand.right, values)
        if len(left) == 1 or len(right) == 1:
            return [a - b for a in left for b in right]
        if len(left) != len(right):
            raise ValueError(f"{operand}: the two sides have {len(left)} and {len(right)} seeds; pairing needs "
                             "the same seeds on both.")
        return [a - b for a, b in zip(left, right, strict=True)]
    return [float(operand)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN where there is no finite value."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean: `std / sqrt(n)` (0 for a constant or a single value)."""
    finite = [v for v in values if math.isfinite(v)]
    return mean_std(finite)[1] / math.sqrt(len(finite)) if finite else math.nan


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One check's numbers and verdict.

    Attributes:
      statement: what was checked, in words.
      left, right: the two sides' means.
      difference: `left - right`.
      verdict: one of `VERDICTS`.
      noise: twice the standard error of the difference.
      seeds: seeds per arm behind the numbers.
      seeds_needed: with `NOT_SHOWN`, the seeds per arm at which this difference, with this spread,
        would decide the check; None otherwise, or where no number of seeds would.
    """

    statement: str
    left: float
    right: float
    difference: float
    verdict: str
    noise: float = 0.0
    seeds: int = 1
    seeds_needed: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Greater:
    """`left` above `right` by more than `margin` and by more than twice the difference's standard error."""

    left: Operand
    right: Operand
    margin: float = 0.0
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        sides = _Sides.of(self.left, self.right, values)
        d = sides.difference
        if d > max(self.margin, sides.noise):
            return sides.outcome(self.statement or f"{self.left} > {self.right}", HOLDS)
        # The seeds at which d would clear 2 se: above the margin it would hold, below 0 it would be
        # contradicted; between 0 and the margin no number of seeds decides it.
        return sides.outcome(self.statement or f"{self.left} > {self.right}",
                             CONTRADICTED if -d > sides.noise else NOT_SHOWN,
                             d if d > self.margin else max(-d, 0.0))


@dataclasses.dataclass(frozen=True)
class Similar:
    """`left` within `tolerance` of `right` (means)."""

    left: Operand
    right: Operand
    tolerance: float
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        sides = _Sides.of(self.left, self.right, values)
        return sides.bounded(self.statement or f"{self.left} ~ {self.right} (within {self.tolerance:g})",
                             abs(sides.difference) - self.tolerance)


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """`left` not below `right` by more than `tolerance` (means)."""

    left: Operand
    right: Operand
    tolerance: float = 0.0
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        sides = _Sides.of(self.left, self.right, values)
        return sides.bounded(self.statement or f"{self.left} >= {self.right} - {self.tolerance:g}",
                             -sides.difference - self.tolerance)


Check = Union[Greater, Similar, AtLeast]


@dataclasses.dataclass(frozen=True)
class _Sides:
    """Both operands' means, their difference, twice its standard error, and the seeds behind them."""

    left: float
    right: float
    noise: float
    seeds: int

    @property
    def difference(self) -> float:
        return self.left - self.right

    @classmethod
    def of(cls, left: Operand, right: Operand, values: Values) -> "_Sides":
        a, b = values_of(left, values), values_of(right, values)
        finite = [[v for v in side if math.isfinite(v)] for side in (a, b)]
        return cls(mean_std(a)[0], mean_std(b)[0], 2 * math.hypot(standard_error(a), standard_error(b)),
                   max(len(side) for side in finite))

    def bounded(self, statement: str, excess: float) -> Outcome:
        """A check that holds while `excess` (how far the difference is past the allowed band) is <= 0."""
        if not math.isfinite(excess):
            return self.outcome(statement, NOT_SHOWN)
        if excess <= 0:
            return self.outcome(statement, HOLDS)
        return self.outcome(statement, CONTRADICTED if excess > self.noise else NOT_SHOWN, excess)

    def outcome(self, statement: str, verdict: str, effect: float = 0.0) -> Outcome:
        """The outcome; with `NOT_SHOWN`, the seeds at which `effect` would be beyond twice the standard error."""
        if not math.isfinite(self.difference):
            verdict = NOT_SHOWN
        needed = None
        if verdict == NOT_SHOWN and effect > 0 and self.noise > 0 and math.isfinite(effect):
            needed = max(self.seeds + 1, math.ceil(self.seeds * (self.noise / effect) ** 2))
        return Outcome(statement, self.left, self.right, self.difference, verdict, self.noise, self.seeds, needed)


def judge(checks: Sequence[Check], values: Values) -> tuple[str, list[Outcome]]:
    """`(verdict, outcomes)`: the claim holds when every check holds, is contradicted when one is."""
    outcomes = [check.evaluate(values) for check in checks]
    if outcomes and all(o.verdict == HOLDS for o in outcomes):
        return HOLDS, outcomes
    return (CONTRADICTED if any(o.verdict == CONTRADICTED for o in outcomes) else NOT_SHOWN), outcomes
