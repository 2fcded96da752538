"""`SidewaysModel.summary()`: the rule in a header, each unit once with its parameter count."""

import re

import sideways_tf as sw
from tests.helpers import conv_units


def _summary(model) -> str:
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


def test_each_unit_once_with_the_rule_in_a_header():
    model = sw.SidewaysModel(conv_units(), mode="skip_sideways", fusion="add", update_every=2, name="m")
    model.build((None, None, 8, 8, 3))
    text = _summary(model)
    assert text.startswith("SidewaysModel 'm': mode='skip_sideways', D=5 units, fusion='add'")
    assert "update_every=2" in text
    for stage in model.stages:
        assert len(re.findall(rf"\b{stage.name} \(Stage\)", text)) == 1
        assert f"{stage.name} = {stage.unit.name}" in text
        assert f"{stage.count_params():,}" in text
    assert "(Sequential)" not in text and "(Dense)" not in text  # the units are not listed a second time
    assert f"Total params: {model.count_params():,}" in text


def test_summary_of_an_unbuilt_model_says_so():
    text = _summary(sw.SidewaysModel(conv_units(), mode="bp", name="m"))
    assert text.startswith("SidewaysModel 'm': mode='bp', D=5 units.")
