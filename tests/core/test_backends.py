"""The backend module of the running Keras backend: VJPs against hand-derived gradients, the frame loop."""

import keras
import numpy as np
import pytest
from keras import ops

from sideways_tf.core import backends


def test_cotangent_vjp_of_a_dense_layer():
    keras.utils.set_random_seed(0)  # an unseeded kernel once gave a near-cancelling entry (rel. error 1.4e-5)
    layer = keras.layers.Dense(3, activation=None)
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 4)).astype("float32"))
    layer.build(x.shape)
    cot = ops.convert_to_tensor(np.random.default_rng(1).normal(size=(2, 3)).astype("float32"))
    kernel, bias = (ops.convert_to_tensor(v.value) for v in layer.trainable_variables)

    def fn(params, inputs):
        return layer.stateless_call(params, [], inputs)

    out, aux, head_value, ((dk, db), dx) = backends.current().value_and_vjp(fn, [[kernel, bias], x], cotangent=cot)
    assert head_value is None and aux == []
    x, cot, kernel = np.asarray(x), np.asarray(cot), np.asarray(kernel)
    np.testing.assert_allclose(out, x @ kernel + np.asarray(bias), rtol=1e-6)
    np.testing.assert_allclose(dx, cot @ kernel.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dk, x.T @ cot, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, cot.sum(0), rtol=1e-5, atol=1e-6)


def test_head_gradient_aux_and_unconnected_zeros():
    x = ops.convert_to_tensor([1.0, 3.0])
    used, unused = ops.convert_to_tensor(2.0), ops.convert_to_tensor(5.0)

    def fn(v, w, inputs):
        return inputs * v, ops.sum(inputs)

    out, aux, loss, (d_used, d_unused, dx) = backends.current().value_and_vjp(
        fn, [used, unused, x], head=lambda o: ops.sum(o**2))
    assert float(loss) == pytest.approx(40.0) and float(aux) == pytest.approx(4.0)
    np.testing.assert_allclose(dx, 2 * np.array([1.0, 3.0]) * 4.0)
    assert float(d_used) == pytest.approx(2 * 2.0 * 10.0) and float(d_unused) == 0.0


def test_needs_exactly_one_of_cotangent_and_head():
    with pytest.raises(ValueError, match="exactly one"):
        backends.current().value_and_vjp(lambda: (ops.ones(()), None), [])


def test_scan_carries_and_stacks():
    def body(s, carry):
        total, = carry
        total = total + ops.cast(s, "float32")
        return (total,), total * 2.0

    (total,), ys = backends.current().scan(body, (ops.zeros(()),), 4, "float32")
    assert float(total) == 6.0
    np.testing.assert_allclose(ys, [0.0, 2.0, 6.0, 12.0])


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow or jax"):
        backends.current()


def test_both_backends_define_every_function_the_seam_lists():
    """The functions `core.backends` lists (`* \\`name(...)\\``) exist in both backend modules: a function
    added to one backend only, or listed and defined nowhere, fails here."""
    import importlib
    import importlib.util
    import re

    listed = re.findall(r"^\* `(\w+)\(", backends.__doc__, flags=re.MULTILINE)
    assert {"optimizer_step", "highest_precision", "device_names", "placement"} <= set(listed), listed
    # Where TensorFlow is not installed (the GPU machines), its backend cannot be imported: check JAX's.
    names = ["jax_backend"] + (["tensorflow_backend"] if importlib.util.find_spec("tensorflow") else [])
    for name in names:
        module = importlib.import_module(f"sideways_tf.core.backends.{name}")
        missing = [f for f in listed if not callable(getattr(module, f, None))]
        assert not missing, (name, missing)


def test_highest_precision_and_device_names_of_the_running_backend():
    import sideways_tf as sw

    names = backends.current().device_names(1)
    assert len(names) == 1 and isinstance(names[0], str)
    with sw.highest_precision():
        x = ops.convert_to_tensor(np.eye(3, dtype="float32"))
        np.testing.assert_allclose(ops.matmul(x, x), np.eye(3))
