"""Whether a claim holds: comparisons of per-seed numbers, as pure functions.

A claim is a list of checks; each compares two operands, each of which stands for one number per
seed: a run's metric (`Metric("skip", "accuracy")`), a constant (chance), or the paired
difference of two operands (how much a rule loses from one setting to another, seed by seed).

* `Greater(a, b)`: a is above b by more than the noise: `mean(a) - mean(b) > max(margin, 2 se)`,
  with `se` the standard error of the difference of the means.
* `Similar(a, b)`: `|mean(a) - mean(b)| <= tolerance` (an absolute tolerance: with three seeds,
  "not shown different" would be too easy to pass).
* `AtLeast(a, b)`: a is not below b by more than `tolerance`.

Each check's verdict is "holds" or "does not hold"; a claim holds when all its checks do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence, Union

HOLDS = "holds"
FAILS = "does not hold"


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
      verdict: `HOLDS` or `FAILS`.
    """

    statement: str
    left: float
    right: float
    difference: float
    verdict: str


@dataclasses.dataclass(frozen=True)
class Greater:
    """`left` above `right` by more than `margin` and by more than twice the difference's standard error."""

    left: Operand
    right: Operand
    margin: float = 0.0
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        left, right, difference = _sides(self.left, self.right, values)
        noise = 2 * math.hypot(standard_error(left), standard_error(right))
        holds = math.isfinite(difference) and difference > max(self.margin, noise)
        return _outcome(self.statement or f"{self.left} > {self.right}", left, right, holds)


@dataclasses.dataclass(frozen=True)
class Similar:
    """`left` within `tolerance` of `right` (means)."""

    left: Operand
    right: Operand
    tolerance: float
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        left, right, difference = _sides(self.left, self.right, values)
        holds = math.isfinite(difference) and abs(difference) <= self.tolerance
        return _outcome(self.statement or f"{self.left} ~ {self.right} (within {self.tolerance:g})", left, right,
                        holds)


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """`left` not below `right` by more than `tolerance` (means)."""

    left: Operand
    right: Operand
    tolerance: float = 0.0
    statement: str = ""

    def evaluate(self, values: Values) -> Outcome:
        left, right, difference = _sides(self.left, self.right, values)
        holds = math.isfinite(difference) and difference >= -self.tolerance
        return _outcome(self.statement or f"{self.left} >= {self.right} - {self.tolerance:g}", left, right, holds)


Check = Union[Greater, Similar, AtLeast]


def _sides(left: Operand, right: Operand, values: Values) -> tuple[list[float], list[float], float]:
    """Both operands' per-seed values and the difference of their means."""
    left_values, right_values = values_of(left, values), values_of(right, values)
    return left_values, right_values, mean_std(left_values)[0] - mean_std(right_values)[0]


def _outcome(statement: str, left: Sequence[float], right: Sequence[float], holds: bool) -> Outcome:
    left_mean, right_mean = mean_std(left)[0], mean_std(right)[0]
    return Outcome(statement, left_mean, right_mean, left_mean - right_mean, HOLDS if holds else FAILS)


def judge(checks: Sequence[Check], values: Values) -> tuple[str, list[Outcome]]:
    """`(verdict, outcomes)`: the claim holds when every check holds."""
    outcomes = [check.evaluate(values) for check in checks]
    verdict = HOLDS if outcomes and all(o.verdict == HOLDS for o in outcomes) else FAILS
    return verdict, outcomes
