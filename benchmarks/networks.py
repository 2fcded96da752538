"""The networks the benchmarks time: one registry, `NETWORKS[name](resolution) -> fresh units`.

Simple-CNN (10 classes), the zoo's VGG-8 and VGG-16 (51 classes), VGG-8 at 1/32 of its widths (`vgg8_tiny`: almost no
arithmetic, so a loop's time is the runtime's own cost), and `keras.applications` networks with
random weights cut into 8 units by `sw.split` (by flops; `resnet50_time` by time measured at
batch 32, once per resolution and process: later builds cut after the same layers). The
applications keep their own classifier over one frame (51 classes, logits).
"""

from __future__ import annotations

from typing import Callable

import keras

import sideways_tf as sw

APPLICATIONS = {"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2", "efficientnetb0": "EfficientNetB0",
                "convnext_tiny": "ConvNeXtTiny"}
_TIMED_CUTS: dict = {}  # (name, resolution) -> the layers a split by time cut after


def application(name: str, resolution: int, balance: str = "flops") -> list:
    """`keras.applications` network `name` (a key of `APPLICATIONS`; random weights, 51 logits) at
    `resolution` x `resolution`, split into 8 units by `balance` ("flops" or "time")."""
    build = getattr(keras.applications, APPLICATIONS[name])
    backbone = build(weights=None, input_shape=(resolution, resolution, 3), classes=51,
                     classifier_activation=None)
    if balance != "time":
        return sw.split(backbone, 8, balance=balance)
    key = (name, resolution)
    if key not in _TIMED_CUTS:
        units = sw.split(backbone, 8, balance="time", batch_size=32)
        _TIMED_CUTS[key] = [unit.layers[-1].name for unit in units[:-1]]
        return units
    return sw.split(backbone, 8, balance=_TIMED_CUTS[key])


def _application(name: str, balance: str = "flops") -> Callable[[int], list]:
    return lambda resolution: application(name, resolution, balance)


NETWORKS: dict[str, Callable[[int], list]] = {
    "simple_cnn": lambda resolution: sw.models.simple_cnn(10),
    "vgg8": lambda resolution: sw.models.vgg8(51),
    "vgg16": lambda resolution: sw.models.vgg16(51),
    "vgg8_tiny": lambda resolution: sw.models.vgg8(51, width=1 / 32),
    **{name: _application(name) for name in APPLICATIONS},
    "resnet50_time": _application("resnet50", "time"),
}


def fusion(name: str) -> str:
    """The skip modes' fusion for network `name`: `"add"` for the split applications (a unit cut from a
    model takes one fixed input shape), else the default `"concat"`."""
    return "add" if name.startswith(tuple(APPLICATIONS)) else "concat"


def compiled_network(name: str, mode: str, resolution: int, devices=None, learning_rate: float = 0.01,
                     **options) -> sw.SidewaysModel:
    """A `SidewaysModel` of network `name` (seeded) in `mode` with `devices` and `options` (e.g. `stateful`),
    compiled with SGD and a per-frame cross-entropy."""
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(NETWORKS[name](resolution), mode=mode, fusion=fusion(name), devices=devices, **options)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
