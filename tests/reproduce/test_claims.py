"""The claims' registry: every check reads arms the claim has, every config is valid, lookups name what is wrong."""

import dataclasses

import pytest

from sideways_tf.reproduce import claims, execute
from sideways_tf.reproduce.verdict import Difference, Metric
from sideways_tf.training.config import validate

pytestmark = pytest.mark.backend_independent("the registry is configs and checks, no model")


def _metrics(operand):
    if isinstance(operand, Metric):
        yield operand
    elif isinstance(operand, Difference):
        yield from _metrics(operand.left)
        yield from _metrics(operand.right)


@pytest.mark.parametrize("claim", claims.CLAIMS.values(), ids=list(claims.CLAIMS))
def test_checks_read_the_claims_own_arms_and_configs_are_valid(claim):
    arms = {arm.name for arm in claim.arms}
    assert len(arms) == len(claim.arms) and claim.checks
    for check in claim.checks:
        for metric in (*_metrics(check.left), *_metrics(check.right)):
            assert metric.arm in arms, f"{claim.name}: a check reads {metric.arm!r}"
            # the claim's metric, held out or on the training fold (a generalisation gap reads both)
            assert metric.metric.removeprefix("train_").startswith(claim.metric.removeprefix("train_"))
    for arm in claim.arms:
        for size in execute.SIZES:
            config = execute.sized(claim.config(arm, seed=2), size)
            validate(config)
            assert config.seed == 2
        if arm.match_parameters_of:
            assert arm.match_parameters_of in arms


def test_the_papers_settings_each_claim_changes():
    motion = claims.CLAIMS["motion"]
    assert [claim.config(arm, 0).mode for claim, arm in ((motion, a) for a in motion.arms)] == [
        "sideways", "skip_sideways", "bp"]
    montage = claims.CLAIMS["montage"]
    shots = {a.name: (montage.config(a, 0).montage, montage.config(a, 0).montage_shots) for a in montage.arms}
    assert shots["concat3"] == ("concat", 3) and shots["interleave3"] == ("interleave", 3)
    assert all(montage.config(a, 0).num_frames % 6 == 0 for a in montage.arms)
    strides = {a.name: claims.CLAIMS["frame_rate"].config(a, 0).stride for a in claims.CLAIMS["frame_rate"].arms}
    assert strides["sideways_stride1"] == 1 and strides["skip_sideways_stride4"] == 4
    prediction = claims.CLAIMS["frame_prediction"].config(claims.CLAIMS["frame_prediction"].arms[0], 0)
    assert prediction.frame_prediction and prediction.model == "full_res" and not prediction.space_to_depth
    # Runs that are the same config in two claims are trained once.
    assert execute.run_key(motion.config(motion.arm("sideways"), 0)) == execute.run_key(
        claims.CLAIMS["ablations"].config(claims.CLAIMS["ablations"].arm("sideways"), 0))


def test_unknown_names_sizes_and_counts_are_refused():
    with pytest.raises(ValueError, match="'nope'.*motion"):
        claims.get(["motion", "nope"])
    assert [c.name for c in claims.get(["wide", "motion"])] == ["motion", "wide"]  # registry order
    with pytest.raises(ValueError, match="`size`"):
        execute.sized(claims.MINIATURE, "huge")
    with pytest.raises(ValueError, match="`seeds`"):
        execute.plan(claims.get(["motion"]), 0, "tiny", "/nonexistent")
    with pytest.raises(ValueError, match="`workers`"):
        execute.execute([], "/nonexistent", workers=0)
    assert dataclasses.replace(claims.MINIATURE, seed=1) != claims.MINIATURE


def test_training_accuracy_is_the_last_epochs_and_a_diverged_run_keeps_its_chance_score():
    run = {"accuracy": 0.42, "history": {"accuracy": [0.5, 0.92], "val_accuracy": [0.4, 0.42]}}
    assert execute.with_derived(run)["train_accuracy"] == 0.92
    diverged = {"accuracy": 0.25, "loss": float("nan"), "history": {}, "diverged": True}
    assert execute.with_derived(diverged)["train_accuracy"] == 0.25
    values = execute.run_values({"a": [run, {**run, "history": {"accuracy": [0.7]}}]})
    assert values[("a", "train_accuracy")] == [0.92, 0.7] and values[("a", "accuracy")] == [0.42, 0.42]


def test_the_frame_rate_and_stability_claims_read_training_accuracy_and_say_what_changed():
    from sideways_tf.reproduce import report

    changes = {"frame_rate": "BP at each stride and a second, higher learning rate",
               "stability": "held-out accuracy became training accuracy"}
    for name, change in changes.items():
        claim = claims.CLAIMS[name]
        assert claim.metric == "train_accuracy" and "training accuracy" in claim.changed
        runs = {arm.name: [{"accuracy": 0.3, "history": {"accuracy": [0.5, 0.9 - 0.1 * i]}, "parameters": 10}
                           for _ in range(3)] for i, arm in enumerate(claim.arms)}
        _, text = report.claim_section(claim, execute.run_values(runs), runs, None)
        assert f"Changed from the last version: {change}" in text
        assert "| training accuracy (last epoch) (mean ± std) |" in text
        assert f"| {claim.arms[0].name} | 0.900 ± 0.000 |" in text
    assert not claims.CLAIMS["motion"].changed
