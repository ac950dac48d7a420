"""Callbacks of the training loop."""
import numpy as np
import tensorflow as tf
import tf_keras

from dasl_tf import callbacks
from dasl_tf import model_dir as model_dir_lib


def test_divergence_guard_stops_on_a_non_finite_loss(tmp_path):
  model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(2,))])
  model.compile(optimizer="adam", loss="mse")
  state = model_dir_lib.TrainingState(model, str(tmp_path / "ckpt"), str(tmp_path / "best"))
  guard = callbacks.DivergenceGuard(state, learning_rate=0.5)
  guard.set_model(model)
  guard.on_epoch_begin(2)
  guard.on_train_batch_end(5, {"loss": tf.constant(1.5)})
  assert not model.stop_training and state.diverged is None
  guard.on_train_batch_end(6, {"loss": tf.constant(np.nan)})
  assert model.stop_training
  assert "epoch 3, step 6" in state.diverged and "learning rate (now 0.5)" in state.diverged
