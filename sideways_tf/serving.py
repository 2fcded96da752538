"""A SavedModel of a `SidewaysModel` for clips and for streams, loadable without this package.

The streaming endpoints follow MoViNet-Stream's contract: `init_states` makes the state of B
streams, and each call takes one frame plus that state and returns the prediction and the new
state, so a server can feed a live video frame by frame.
"""

from __future__ import annotations

import keras


def export_saved_model(model, filepath: str, verbose=None) -> None:
    """Writes `serve`, `init_states` and `stream_step` endpoints (see `SidewaysModel.export`).

    `stream_step(frame, state)` returns one flat dict, `{"prediction": [B, *O], **new_state}`:

    ```python
    loaded = tf.saved_model.load(path)
    state = loaded.init_states(tf.constant(batch_size))
    for frame in frames:  # [B, *F] float32
        state = loaded.stream_step(frame, state)
        prediction = state.pop("prediction")
    ```

    Args:
      model: a built `SidewaysModel`.
      filepath: the SavedModel directory.
      verbose: passed to Keras' `ExportArchive.write_out`.

    Raises:
      ValueError: when the backend is not TensorFlow or the model is not built.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"`export` writes a TensorFlow SavedModel and needs KERAS_BACKEND=tensorflow; the backend is "
            f"{keras.backend.backend()!r}. Save the weights (`model.save`) and export from a TensorFlow process."
        )
    import tensorflow as tf

    model._require_built()
    frame_shape = tuple(model.frame_shape)
    state = model.init_state(1)
    state_spec = {name: tf.TensorSpec((None,) + tuple(value.shape[1:]), value.dtype) for name, value in state.items()}
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(video):
        return model(video, training=False)

    def init_states(batch_size):
        return model.engine.initial_frame_state(batch_size)

    def stream_step(frame, state):
        # Signatures return flat dicts: the prediction beside the new state's entries.
        params, states = model.engine.current_values()
        prediction, state = model.engine.frame_step(params, states, frame, state)
        return {"prediction": prediction, **state}

    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec((None, None) + frame_shape, "float32")])
    archive.add_endpoint("init_states", init_states, input_signature=[tf.TensorSpec((), "int32")])
    archive.add_endpoint("stream_step", stream_step,
                         input_signature=[tf.TensorSpec((None,) + frame_shape, "float32"), state_spec])
    kwargs = {} if verbose is None else {"verbose": verbose}
    archive.write_out(filepath, **kwargs)
