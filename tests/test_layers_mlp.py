"""MLP: ReLU hidden layers, dropout in training only, a linear output layer."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import MLP
from dasl_tf.layers.mlp import CheckpointedDropout
from tests import layer_testing


def mlp_numpy(mlp, x):
  """The MLP forward pass from its weights: ReLU hidden layers, linear output (NumPy)."""
  weights = mlp.get_weights()
  for i in range(0, len(weights) - 2, 2):
    x = np.maximum(x @ weights[i] + weights[i + 1], 0.0)
  return x @ weights[-2] + weights[-1]


def test_matches_numpy_on_any_leading_shape():
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
  layer = MLP(hidden_units=(6, 4), output_units=2)
  np.testing.assert_allclose(layer(x).numpy(), mlp_numpy(layer, x), rtol=1e-5, atol=1e-6)


def test_dropout_acts_in_training_only():
  x = np.random.default_rng(1).normal(size=(64, 5)).astype(np.float32)
  layer = MLP(hidden_units=(32,), output_units=3, dropout=0.5)
  np.testing.assert_allclose(layer(x, training=False).numpy(), mlp_numpy(layer, x),
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(layer(x, training=True).numpy(), mlp_numpy(layer, x))


def test_l2_adds_one_loss_per_kernel():
  layer = MLP(hidden_units=(4,), output_units=1, l2=0.1)
  layer(tf.ones([2, 3]))
  kernels = [w.numpy() for w in layer.trainable_weights if "kernel" in w.name]
  np.testing.assert_allclose(sorted(float(loss) for loss in layer.losses),
                             sorted(0.1 * np.sum(k ** 2) for k in kernels), rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_units=(0,), output_units=1), "positive"),
    (dict(hidden_units=(), output_units=0), "positive"),
    (dict(hidden_units=(), output_units=1, dropout=1.0), "dropout"),
    (dict(hidden_units=(), output_units=1, l2=-1.0), "l2"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    MLP(**kwargs)


@pytest.mark.parametrize("init_kwargs, num_trainable, num_losses", [
    (dict(hidden_units=(), output_units=2), 2, 0),  # a linear map
    (dict(hidden_units=(16, 8), output_units=1, dropout=0.2, l2=0.01), 6, 3),
])
def test_layer_contract(init_kwargs, num_trainable, num_losses, tmp_path):
  layer_testing.run_layer_test(
      MLP, init_kwargs, str(tmp_path), input_shape=(4, 3, 8),
      expected_output_shape=(4, 3, init_kwargs["output_units"]),
      expected_num_trainable_weights=num_trainable, expected_num_losses=num_losses)


def test_checkpointed_dropout_zeroes_and_rescales_in_training_only():
  layer = CheckpointedDropout(0.25, seed=3)
  x = tf.ones([200, 50])
  np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
  y = layer(x, training=True).numpy()
  np.testing.assert_allclose(np.unique(y), [0.0, 1.0 / 0.75], rtol=1e-6)
  assert abs((y == 0).mean() - 0.25) < 0.02  # 10,000 draws: 0.02 is > 4 standard deviations


def test_checkpointed_dropout_masks_continue_after_a_restore(tmp_path):
  """The random state is in the checkpoint: a restored layer draws the masks the original would."""
  x = tf.ones([8, 16])
  original = CheckpointedDropout(0.5, seed=11)
  original(x, training=True)
  path = tf.train.Checkpoint(layer=original).save(str(tmp_path / "ckpt"))
  expected = [original(x, training=True).numpy() for _ in range(3)]
  restored = CheckpointedDropout(0.5, seed=99)  # another seed: only the restore can match
  restored(x, training=True)
  tf.train.Checkpoint(layer=restored).restore(path).assert_existing_objects_matched()
  for mask in expected:
    np.testing.assert_array_equal(restored(x, training=True).numpy(), mask)
  assert not np.array_equal(expected[0], expected[1])


def test_checkpointed_dropout_layer_contract(tmp_path):
  """No weights; the identity outside training (the contract calls it in inference mode)."""
  layer_testing.run_layer_test(
      CheckpointedDropout, dict(rate=0.3, seed=5), str(tmp_path), input_shape=(4, 6),
      expected_output_shape=(4, 6), expected_num_trainable_weights=0)
