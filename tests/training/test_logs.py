"""`read_scalars`: both kinds of scalar back from event files, sorted by step; other summaries ignored."""

import numpy as np
import pytest
import tensorflow as tf

from sideways_tf.training import read_scalars

pytestmark = pytest.mark.backend_independent("tf.summary files")


def test_reads_scalars_sorted_by_step_and_skips_images(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step in (2, 0, 1):
            tf.summary.scalar("fidelity/unit1", 0.5 + step, step=step)
        tf.summary.scalar("fidelity/unit1", 9.0, step=1)  # written again: the last value counts
        tf.summary.image("frames", np.zeros((1, 4, 4, 3), "float32"), step=0)
    writer.close()
    curves = read_scalars(str(tmp_path))
    assert list(curves) == ["fidelity/unit1"]
    steps, values = curves["fidelity/unit1"]
    np.testing.assert_array_equal(steps, [0, 1, 2])
    np.testing.assert_allclose(values, [0.5, 9.0, 2.5])
    assert read_scalars(str(tmp_path), tags=["other"]) == {}


def test_a_folder_without_events_names_itself(tmp_path):
    with pytest.raises(ValueError, match="log_dir=.* holds no TensorBoard event file"):
        read_scalars(str(tmp_path))
