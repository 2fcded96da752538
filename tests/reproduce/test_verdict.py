"""The verdict logic on made-up numbers: each check's rule, pairing, divergence, the claim's verdict."""

import math

import pytest

from sideways_tf.reproduce.verdict import (
    FAILS,
    HOLDS,
    AtLeast,
    Difference,
    Greater,
    Metric,
    Similar,
    judge,
    mean_std,
    values_of,
)

A, B = Metric("a", "accuracy"), Metric("b", "accuracy")


def _values(a, b):
    return {("a", "accuracy"): a, ("b", "accuracy"): b}


def test_mean_std_is_the_sample_deviation_and_skips_non_finite_values():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, math.nan, 3.0]) == pytest.approx((2.0, math.sqrt(2.0)))
    assert all(math.isnan(x) for x in mean_std([math.nan]))


def test_greater_needs_the_margin_and_twice_the_standard_error():
    assert Greater(A, B, 0.05).evaluate(_values([0.6, 0.62, 0.61], [0.12, 0.13, 0.12])).verdict == HOLDS
    # Above the margin, but within the noise: three seeds spread over 0.3.
    noisy = _values([0.3, 0.6, 0.9], [0.5, 0.5, 0.5])
    assert Greater(A, B, 0.05).evaluate(noisy).verdict == FAILS
    # Clean, but below the margin.
    assert Greater(A, B, 0.05).evaluate(_values([0.54, 0.54, 0.54], [0.5, 0.5, 0.5])).verdict == FAILS
    outcome = Greater(B, A).evaluate(_values([0.6, 0.6], [0.1, 0.1]))
    assert outcome.verdict == FAILS and outcome.difference == pytest.approx(-0.5)


def test_similar_and_at_least_use_an_absolute_tolerance():
    near = _values([0.52, 0.50, 0.51], [0.49, 0.50, 0.48])
    assert Similar(A, B, 0.05).evaluate(near).verdict == HOLDS
    assert Similar(A, B, 0.01).evaluate(near).verdict == FAILS
    assert Similar(A, 0.125, 0.05, "a ~ chance").evaluate(_values([0.13, 0.12, 0.14], [0])).statement == "a ~ chance"
    assert AtLeast(A, B, 0.02).evaluate(_values([0.49], [0.5])).verdict == HOLDS
    assert AtLeast(A, B, 0.02).evaluate(_values([0.47], [0.5])).verdict == FAILS


def test_differences_pair_seeds_and_broadcast_constants():
    values = _values([0.9, 0.8, 0.7], [0.5, 0.5, 0.4])
    assert values_of(Difference(A, B), values) == pytest.approx([0.4, 0.3, 0.3])
    assert values_of(Difference(A, 0.5), values) == pytest.approx([0.4, 0.3, 0.2])
    with pytest.raises(ValueError, match="pairing"):
        values_of(Difference(A, B), _values([0.9, 0.8], [0.5, 0.5, 0.4]))
    with pytest.raises(KeyError, match="'c'"):
        values_of(Metric("c", "accuracy"), values)
    # "loses less from stride 1 to 4": skip drops 0.05, sideways 0.2.
    drops = {("skip1", "accuracy"): [0.8, 0.8], ("skip4", "accuracy"): [0.75, 0.75],
             ("sw1", "accuracy"): [0.7, 0.7], ("sw4", "accuracy"): [0.5, 0.5]}
    check = AtLeast(Difference(Metric("skip4", "accuracy"), Metric("skip1", "accuracy")),
                    Difference(Metric("sw4", "accuracy"), Metric("sw1", "accuracy")))
    assert check.evaluate(drops).verdict == HOLDS


def test_a_claim_holds_only_when_every_check_does():
    values = _values([0.6, 0.61, 0.62], [0.12, 0.13, 0.12])
    holds = (Greater(A, B, 0.05), Similar(B, 0.125, 0.05))
    assert judge(holds, values)[0] == HOLDS
    decided, outcomes = judge(holds + (Similar(A, 0.125, 0.05),), values)
    assert decided == FAILS and [o.verdict for o in outcomes] == [HOLDS, HOLDS, FAILS]
    assert judge((), values)[0] == FAILS
    # Every seed diverged (no finite value): nothing can hold.
    assert judge((Greater(A, B),), _values([math.nan] * 3, [0.1] * 3))[0] == FAILS
