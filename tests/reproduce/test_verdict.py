"""The verdict logic on made-up numbers: each check's rule and its three verdicts, the seeds a difference
would need, pairing, divergence, the claim's verdict."""

import math

import pytest

from sideways_tf.reproduce.verdict import (
    CONTRADICTED,
    HOLDS,
    NOT_SHOWN,
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
    noisy = _values([0.33, 0.63, 0.93], [0.5, 0.5, 0.5])
    outcome = Greater(A, B, 0.05).evaluate(noisy)
    assert outcome.verdict == NOT_SHOWN and outcome.seeds == 3
    # 2 se = 2 * 0.3 / sqrt(3) = 0.346 against a difference of 0.13: 3 * (0.346 / 0.13)^2 = 21.3, so 22 seeds.
    assert outcome.noise == pytest.approx(0.3464, abs=1e-4) and outcome.seeds_needed == 22
    # Clean, but below the margin: no number of seeds shows it.
    outcome = Greater(A, B, 0.05).evaluate(_values([0.54, 0.54, 0.54], [0.5, 0.5, 0.5]))
    assert outcome.verdict == NOT_SHOWN and outcome.seeds_needed is None
    # The opposite direction, beyond the noise.
    outcome = Greater(B, A).evaluate(_values([0.6, 0.6], [0.1, 0.1]))
    assert outcome.verdict == CONTRADICTED and outcome.difference == pytest.approx(-0.5)
    # The opposite direction within the noise is not a contradiction; more seeds could make it one.
    outcome = Greater(A, B).evaluate(_values([0.43, 0.63, 0.23], [0.5, 0.5, 0.5]))
    assert outcome.verdict == NOT_SHOWN and outcome.seeds_needed == math.ceil(3 * (outcome.noise / 0.07) ** 2)


def test_similar_and_at_least_use_an_absolute_tolerance():
    near = _values([0.52, 0.50, 0.51], [0.49, 0.50, 0.48])
    assert Similar(A, B, 0.05).evaluate(near).verdict == HOLDS
    # Apart by 0.02 against a tolerance of 0.01: 0.01 too far, within 2 se (0.017).
    outcome = Similar(A, B, 0.01).evaluate(near)
    assert outcome.verdict == NOT_SHOWN
    assert outcome.seeds_needed == math.ceil(3 * (outcome.noise / (outcome.difference - 0.01)) ** 2) == 8
    assert Similar(A, B, 0.01).evaluate(_values([0.6, 0.6, 0.6], [0.5, 0.5, 0.5])).verdict == CONTRADICTED
    assert Similar(A, 0.125, 0.05, "a ~ chance").evaluate(_values([0.13, 0.12, 0.14], [0])).statement == "a ~ chance"
    assert AtLeast(A, B, 0.02).evaluate(_values([0.49], [0.5])).verdict == HOLDS
    assert AtLeast(A, B, 0.02).evaluate(_values([0.47], [0.5])).verdict == CONTRADICTED  # one seed: no noise
    assert AtLeast(A, B, 0.02).evaluate(_values([0.37, 0.57, 0.47], [0.5, 0.5, 0.5])).verdict == NOT_SHOWN


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
    assert decided == CONTRADICTED and [o.verdict for o in outcomes] == [HOLDS, HOLDS, CONTRADICTED]
    # One check not shown and none contradicted: the claim is not shown.
    assert judge(holds + (Greater(A, B, 0.9),), values)[0] == NOT_SHOWN
    assert judge((), values)[0] == NOT_SHOWN
    # Every seed diverged (no finite value): nothing is shown either way.
    assert judge((Greater(A, B),), _values([math.nan] * 3, [0.1] * 3))[0] == NOT_SHOWN
