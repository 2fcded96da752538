"""Training over several worker processes (`MultiWorkerMirroredStrategy`) with a loop of our own around `strategy.run`.

Keras 3's `fit` and `evaluate` fail under `MultiWorkerMirroredStrategy` (keras-team/keras#20585:
their data handling turns the per-replica batch into a tensor). Here each step is
`strategy.run(model.train_step, (batch,))` inside one `tf.function`: the model's own train step
(its rule, Keras' loss scaling, the optimizer's cross-replica aggregation), so an update equals
the single-process update on the combined batch. Around it the loop does what `fit` does for the
runner: the callbacks (TensorBoard, backups, the epoch summary) with the same logs, a `History`,
validation with `val_` logs, and `stop_training`.

Every worker runs the same calls in the same order: reading a metric or saving weights may be a
collective operation that all workers must join. Only the chief writes into the run's folder;
the others write their (identical) logs and backups to a folder of their own, thrown away.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf


def distribute(strategy, dataset: tf.data.Dataset):
    """The dataset split between the workers batch by batch: each global batch `[B, ...]` is cut into
    per-replica batches, so that together the workers see exactly what one process would.

    Every worker must build the same dataset (same files, same seed).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


class WorkerLoop:
    """`fit` and `evaluate` for a compiled model under `strategy` (any `tf.distribute` strategy).

    Args:
      model: a compiled Keras model created in `strategy.scope()`.
      strategy: the strategy.
    """

    def __init__(self, model: keras.Model, strategy):
        self.model, self.strategy = model, strategy

        def train(iterator):
            strategy.run(model.train_step, args=(next(iterator),))

        def test(iterator):
            strategy.run(model.test_step, args=(next(iterator),))

        self._train, self._test = tf.function(train), tf.function(test)

    def _logs(self) -> dict:
        return {k: float(v) for k, v in self.model.get_metrics_result().items()}

    def evaluate(self, dataset: tf.data.Dataset, steps: Optional[int] = None, callbacks=None) -> dict:
        """The metrics over `dataset` (or its first `steps` batches), as `model.evaluate(return_dict=True)`."""
        self.model.reset_metrics()
        if callbacks is not None:
            callbacks.on_test_begin()
        iterator = iter(distribute(self.strategy, dataset))
        step = 0
        while steps is None or step < steps:
            try:
                self._test(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            step += 1
        logs = self._logs()
        if callbacks is not None:
            callbacks.on_test_end(logs)
        return logs

    def fit(self, train: tf.data.Dataset, epochs: int, steps_per_epoch: int, steps_done: int = 0,
            validation_data: Optional[tf.data.Dataset] = None, validation_steps: Optional[int] = None,
            callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
        """Trains from optimizer step `steps_done` to `epochs * steps_per_epoch`; returns the history.

        Args:
          train: global batches; repeated, so that `steps_per_epoch` batches make an epoch.
          epochs: the last epoch (exclusive), as `fit`'s `epochs`.
          steps_per_epoch: batches per epoch.
          steps_done: optimizer steps already taken (a resumed run): the rest of that epoch is
            trained first, then the others.
          validation_data, validation_steps: evaluated after each epoch, logged with `val_`.
          callbacks: Keras callbacks, called as `fit` calls them.

        Returns:
          `{metric: [one value per epoch trained here]}`.
        """
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(list(callbacks) + [history], model=self.model, epochs=epochs,
                                                     steps=steps_per_epoch, verbose=0)
        self.model.stop_training = False
        iterator = iter(distribute(self.strategy, train.repeat()))
        epoch, into = divmod(steps_done, steps_per_epoch)
        callback_list.on_train_begin()
        while epoch < epochs and not self.model.stop_training:
            self.model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            logs = {}
            for step in range(into, steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                self._train(iterator)
                logs = self._logs()
                callback_list.on_train_batch_end(step, logs)
                if self.model.stop_training:
                    break
            if validation_data is not None and not self.model.stop_training:
                validation = self.evaluate(validation_data, validation_steps, callback_list)
                logs = {**logs, **{f"val_{k}": v for k, v in validation.items()}}
            callback_list.on_epoch_end(epoch, logs)
            epoch, into = epoch + 1, 0
        callback_list.on_train_end()
        return dict(history.history)
