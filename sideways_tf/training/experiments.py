"""The papers' experiments as named configs, registered explicitly in this one module.

Names: `sideways_*` (Sideways, CVPR 2020), `skip_*` (Skip-Sideways, CVPR 2021), `stability_*`
(its supplementary material's sweeps), and `quickstart`. The mode of a named experiment is the
one its paper row trains with; `--mode` switches it (e.g. `--mode bp` for a BP column).
"""

from __future__ import annotations

import dataclasses

from sideways_tf.models.vgg import wide_vgg8_width
from sideways_tf.training.config import Config

# The papers' recipe: Adam, clipping by value 1.0, warm-up to the initial rate at epoch 5, /10 at
# epochs 100 and 200, batch 8, 112x112, 64 frames, space-to-depth. Each departure below quotes the
# sentence it follows (experiments/configs.md lists them).
PAPER = Config()
# Sideways paper, 4.2: "at test time we evaluate over the whole video sequence".
HMDB51 = dict(dataset="hmdb51", train_split="train", eval_split="test", num_classes=51, whole_video_eval=True)
UCF101 = dict(dataset="ucf101", train_split="train", eval_split="test", num_classes=101, whole_video_eval=True)
# Skip-Sideways supplement: "we use batch-size 16 per host. Hence, the total batch-size is 128 in the
# first setup [8 hosts]"; 32 frames.
KINETICS = dict(dataset="kinetics600", train_split="train", eval_split="validation", num_classes=600, num_frames=32,
                batch_size=128)
DATASETS = {"hmdb51": HMDB51, "ucf101": UCF101}
# The Sideways paper never mentions space-to-depth (with it, VGG-8's fc6 would see a 1x1 map at
# 112x112); the Skip-Sideways supplement: "In all our experiments, we use space-to-depth".
SIDEWAYS_PAPER = dict(space_to_depth=False)


# The Skip-Sideways supplement, Models: "We train all the models with ADAM and a cosine learning rate
# schedule" (every `skip_*` and `stability_*` experiment; the Sideways paper's step schedule stays
# with `sideways_*`).
SKIP_PAPER = dict(schedule="cosine")


def _exp(description: str, **changes) -> Config:
    return dataclasses.replace(PAPER, description=description, **changes)


def _skip(description: str, **changes) -> Config:
    """An experiment of the Skip-Sideways paper or its supplement (`SKIP_PAPER` first)."""
    return _exp(description, **{**SKIP_PAPER, **changes})


def _build() -> dict[str, Config]:
    experiments = {}
    # Sideways paper, Table 1: Simple-CNN and VGG-8 (with and without dropout), BP vs Sideways.
    for name, kwargs in DATASETS.items():
        experiments[f"sideways_t1_simple_cnn_{name}"] = _exp(
            f"Sideways Table 1: Simple-CNN on {name} (--mode bp for the BP column)", model="simple_cnn",
            **SIDEWAYS_PAPER, **kwargs)
        experiments[f"sideways_t1_vgg8_{name}"] = _exp(
            f"Sideways Table 1: VGG-8 on {name} (--mode bp for the BP column)", model="vgg8", **SIDEWAYS_PAPER,
            **kwargs)
        experiments[f"sideways_t1_vgg8_dropout_{name}"] = _exp(
            f"Sideways Table 1: VGG-8 + dropout 0.9 on {name}", model="vgg8", dropout=0.9, **SIDEWAYS_PAPER,
            **kwargs)
    # Sideways paper, Table 3: auto-encoding (the paper's CATER videos: point root_dir at them).
    # "square crops of 240 x 240 pixels, extracted randomly during training and central crops of the
    # same size during testing"; CATER's train and test sequences; updated after every frame.
    experiments["sideways_t3_autoencoding"] = _exp(
        "Sideways Table 3: auto-encoding, Simple-CNN encoder + BP decoder; needs --set root_dir=<CATER videos "
        "in train/ and test/>", model="encoder_decoder", dataset="video_folder", future_offset=0, train_split="train",
        eval_split="test", resolution=240, update_every=1, **SIDEWAYS_PAPER)
    # Skip-Sideways paper, Table 1: VGG-8 on HMDB51/UCF101, VGG-16 on Kinetics-600 (concat).
    for name, kwargs in DATASETS.items():
        experiments[f"skip_t1_vgg8_{name}"] = _skip(
            f"Skip-Sideways Table 1: VGG-8 on {name}, concat (--mode sideways for the Sideways row)",
            model="vgg8", mode="skip_sideways", **kwargs)
        # Table 2: the ablations (Sideways row: --mode sideways).
        experiments[f"skip_t2_add_{name}"] = _skip(
            f"Skip-Sideways Table 2: add fusion on {name}", model="vgg8", mode="skip_sideways", fusion="add", **kwargs)
        experiments[f"skip_t2_fa_{name}"] = _skip(
            f"Skip-Sideways Table 2: FA-Skip-Sideways on {name}", model="vgg8", mode="fa_skip_sideways", **kwargs)
        # Table 3: wide VGG-8 with as many parameters as Skip-Sideways concat, trained with Sideways.
        experiments[f"skip_t3_wide_vgg8_{name}"] = _skip(
            f"Skip-Sideways Table 3: wide VGG-8 with Sideways on {name}", model="vgg8", mode="sideways",
            width=round(wide_vgg8_width(kwargs["num_classes"], "concat", PAPER.resolution, True), 4), **kwargs)
    experiments["skip_t1_vgg16_kinetics600"] = _skip(
        "Skip-Sideways Table 1: VGG-16 on Kinetics-600, 112x112", model="vgg16", mode="skip_sideways", **KINETICS)
    # Table 6: Kinetics-600 at 224x224; 3D baselines trained with BP.
    # Table 6: "We use resolution 224 x 224 and total batch-size 256" (16 hosts x 16).
    table6 = {**KINETICS, "resolution": 224, "batch_size": 256}
    experiments["skip_t6_vgg16_kinetics600"] = _skip(
        "Skip-Sideways Table 6: Skip-Sideways VGG-16, 224x224", model="vgg16", mode="skip_sideways", **table6)
    experiments["skip_t6_vgg16_3d_kinetics600"] = _skip(
        "Skip-Sideways Table 6: 3D VGG-16 (BP)", model="vgg16_3d", mode="bp", **table6)
    experiments["skip_t6_causal_vgg16_3d_kinetics600"] = _skip(
        "Skip-Sideways Table 6: causal 3D VGG-16 (BP)", model="causal_vgg16_3d", mode="bp", **table6)
    # Table 7: Full-Res predicting the frame 8 steps ahead (--mode sideways for the Sideways row).
    # "Full-Res on Kinetics-600, trained with batch size 64, 112 x 112"; it "maintains the input
    # resolution through all the layers", so no space-to-depth.
    experiments["skip_t7_full_res_kinetics600"] = _skip(
        "Skip-Sideways Table 7: Full-Res frame prediction t+8, L2", model="full_res", mode="skip_sideways",
        future_offset=8, space_to_depth=False, **{**KINETICS, "batch_size": 64})
    # Supplementary material: stability sweeps on HMDB51 (--mode sideways for the left panels).
    for rate in ("0.01", "0.1", "1.0"):
        experiments[f"stability_lr_{rate}"] = _skip(
            f"Stability: initial learning rate {rate}", model="vgg8", mode="skip_sideways",
            learning_rate=float(rate), **HMDB51)
    for stride, fps in ((1, 30), (2, 15), (4, 7), (8, 4)):
        experiments[f"stability_frame_rate_{fps}fps"] = _skip(
            f"Stability: input frame rate ~{fps} fps (temporal stride {stride})", model="vgg8", mode="skip_sideways",
            stride=stride, **HMDB51)
    # The supplement's Figures 3 and 4 average each curve over the other hyperparameter: the grid.
    for rate in ("0.01", "0.1", "1.0"):
        for stride, fps in ((1, 30), (2, 15), (4, 7), (8, 4)):
            experiments[f"stability_lr{rate}_{fps}fps"] = _skip(
                f"Stability grid: initial learning rate {rate}, ~{fps} fps (stride {stride})", model="vgg8",
                mode="skip_sideways", learning_rate=float(rate), stride=stride, **HMDB51)
    for shots in (2, 3):
        experiments[f"stability_montage_concat{shots}"] = _skip(
            f"Stability: montage of {shots} clips of 16 frames", model="vgg8", mode="skip_sideways",
            montage="concat", montage_shots=shots, **{**HMDB51, "num_frames": 16 * shots})
        # Figure 5: "Red, green and blue denote the initial learning rate as 0.0001, 0.001, 0.01."
        for rate in ("0.0001", "0.001", "0.01"):
            experiments[f"stability_montage_concat{shots}_lr{rate}"] = _skip(
                f"Stability: montage of {shots} clips, initial learning rate {rate}", model="vgg8",
                mode="skip_sideways", montage="concat", montage_shots=shots, learning_rate=float(rate),
                **{**HMDB51, "num_frames": 16 * shots})
    experiments["stability_montage_interleave3"] = _skip(
        "Stability: frames of 3 clips interleaved (48 frames)", model="vgg8", mode="skip_sideways",
        montage="interleave", montage_shots=3, **{**HMDB51, "num_frames": 48})
    # The project's main job: offline, minutes on a CPU.
    experiments["quickstart"] = _exp(
        "Moving shapes, motion labels: a small CNN, 8 classes no single frame reveals",
        dataset="moving_shapes", label_set="motion", train_split="train", eval_split="validation",
        num_examples=1024, model="small_cnn", num_classes=8, mode="skip_sideways", num_frames=12, resolution=24,
        stride=3, batch_size=16, space_to_depth=False, learning_rate=3e-3, schedule="cosine", warmup_epochs=0,
        epochs=7, validation_steps=16)
    return experiments


EXPERIMENTS: dict[str, Config] = _build()

SWEEPS: dict[str, dict[str, tuple]] = {
    # Sideways paper, 4.3: "We do a hyper-parameter search over the weight decay coefficient (possible
    # values are: 0.0, 10^-4, 10^-3, 10^-2), and over the initial learning rate (either 10^-4 or
    # 10^-5), fairly for both types of training."
    "sideways_search": {"weight_decay": (0.0, 1e-4, 1e-3, 1e-2), "learning_rate": (1e-4, 1e-5)},
}
"""Named hyperparameter searches: per config field, the values to try (`sideways-train --sweep NAME`
runs every combination on top of an experiment)."""


def sweep(name: str) -> list[list[str]]:
    """Every combination of sweep `name`'s values, each as `key=value` overrides (the first field varies slowest).

    Raises:
      ValueError: naming the unknown sweep and the known ones.
    """
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; the sweeps are {', '.join(map(repr, SWEEPS))}.")
    combinations: list[list[str]] = [[]]
    for key, values in SWEEPS[name].items():
        combinations = [done + [f"{key}={value!r}"] for done in combinations for value in values]
    return combinations


def get(name: str) -> Config:
    """The named experiment's config. Raises ValueError naming the unknown name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; `sideways-train --list` shows the {len(EXPERIMENTS)} "
                         "experiments.")
    return EXPERIMENTS[name]
