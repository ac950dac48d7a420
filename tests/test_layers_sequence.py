"""SequenceEncoder: the GRU of eq. (3)-(5) with left padding masked."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf.layers import SequenceEncoder
from tests import layer_testing


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _gru_numpy(layer, x, mask):
  """Eq. (3)-(5) with Keras's weights (gate order z, r, h); masked steps keep the state."""
  kernel, recurrent, bias = layer.get_weights()
  units = recurrent.shape[0]
  w = np.split(kernel, 3, axis=1)
  u = np.split(recurrent, 3, axis=1)
  b = np.split(bias, 3)
  h = np.zeros((x.shape[0], units))
  outputs = []
  for t in range(x.shape[1]):
    z = _sigmoid(x[:, t] @ w[0] + h @ u[0] + b[0])
    r = _sigmoid(x[:, t] @ w[1] + h @ u[1] + b[1])
    candidate = np.tanh(x[:, t] @ w[2] + (r * h) @ u[2] + b[2])
    new_h = z * h + (1 - z) * candidate  # Keras's z is the paper's 1 - z_t.
    h = np.where(mask[:, t:t + 1], new_h, h)
    outputs.append(h)
  return np.stack(outputs, 1), h


@pytest.mark.parametrize("unroll", [True, False])
def test_matches_numpy_gru_with_left_padding(unroll):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
  layer = SequenceEncoder(units=6, unroll=unroll)
  outputs, state = layer(x, mask=mask)
  expected_outputs, expected_state = _gru_numpy(layer, x, mask)
  np.testing.assert_allclose(state.numpy(), expected_state, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outputs.numpy(), expected_outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state.numpy()[2], 0.0)


@pytest.mark.parametrize("unroll", [True, False])
def test_matches_keras_gru_with_the_same_weights(unroll):
  """Same weights, same function as ``tf_keras.layers.GRU(reset_after=False)``."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(4, 6, 3)).astype(np.float32)
  mask = np.array([[0, 0, 0, 1, 1, 1], [1] * 6, [0] * 6, [0, 0, 0, 0, 0, 1]], bool)
  layer = SequenceEncoder(units=5, unroll=unroll)
  layer.build(x.shape)
  keras_gru = tf_keras.layers.GRU(5, return_sequences=True, return_state=True,
                                  reset_after=False)
  keras_gru.build(x.shape)
  weights = [rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
  layer.set_weights(weights)  # kernel, recurrent kernel, bias (non-zero)
  keras_gru.set_weights(weights)
  outputs, state = layer(x, mask=mask)
  expected_outputs, expected_state = keras_gru(x, mask=mask)
  np.testing.assert_allclose(outputs.numpy(), expected_outputs.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state.numpy(), expected_state.numpy(), rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_the_state():
  rng = np.random.default_rng(1)
  items = rng.normal(size=(1, 3, 4)).astype(np.float32)
  padded = np.concatenate([rng.normal(size=(1, 2, 4)).astype(np.float32), items], 1)
  layer = SequenceEncoder(units=5, return_sequences=False)
  short = layer(items, mask=np.ones((1, 3), bool))
  long = layer(padded, mask=np.array([[False, False, True, True, True]]))
  np.testing.assert_allclose(long.numpy(), short.numpy(), rtol=1e-5, atol=1e-6)


def test_rejects_bad_units():
  with pytest.raises(ValueError, match="units"):
    SequenceEncoder(units=0)


@pytest.mark.parametrize("init_kwargs, output_shape", [
    (dict(units=5), [(2, 4, 5), (2, 5)]),  # (outputs, state)
    (dict(units=5, unroll=False), [(2, 4, 5), (2, 5)]),
    (dict(units=5, return_sequences=False), (2, 5)),
])
def test_layer_contract(init_kwargs, output_shape, tmp_path):
  mask = tf.constant([[False, True, True, True], [True, True, True, True]])
  layer_testing.run_layer_test(
      SequenceEncoder, init_kwargs, str(tmp_path), input_shape=(2, 4, 3),
      call_kwargs={"mask": mask}, expected_output_shape=output_shape,
      expected_num_trainable_weights=3)  # kernel, recurrent kernel, bias
