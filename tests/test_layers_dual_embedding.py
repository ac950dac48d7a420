"""Dual Embedding: eq. (1)-(2) over overlap users, the orthogonality penalty and retraction."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf.layers import (DualEmbedding, OrthogonalityRegularizer, OrthogonalRetraction,
                            orthogonality_residual)
from tests import layer_testing


def test_regularizer_is_squared_frobenius_norm_of_gram_minus_identity():
  kernel = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
  expected = 0.3 * np.sum((kernel.T @ kernel - np.eye(4)) ** 2)
  np.testing.assert_allclose(OrthogonalityRegularizer(0.3)(tf.constant(kernel)).numpy(),
                             expected, rtol=1e-5)


def test_regularizer_sees_row_norms_unlike_keras_orthogonal_regularizer():
  scaled_identity = tf.eye(3) * 2.0
  assert float(OrthogonalityRegularizer(1.0)(scaled_identity)) == pytest.approx(27.0)
  assert float(OrthogonalityRegularizer(1.0)(tf.eye(3))) == pytest.approx(0.0)


def test_retraction_moves_a_perturbed_orthogonal_matrix_back():
  q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(6, 6)))
  perturbed = tf.constant(q + 0.01 * np.random.default_rng(3).normal(size=(6, 6)), tf.float32)
  before = float(orthogonality_residual(perturbed))
  after = float(orthogonality_residual(OrthogonalRetraction(steps=2)(perturbed)))
  assert after < before / 100


def test_mappings_and_dual_losses_match_numpy():
  rng = np.random.default_rng(4)
  user_a = rng.normal(size=(5, 3)).astype(np.float32)
  user_b = rng.normal(size=(5, 3)).astype(np.float32)
  overlap = np.array([True, False, True, True, False])
  layer = DualEmbedding(dual_weight=0.2, orthogonality_weight=0.7, seed=0)
  layer.build([(None, 3), (None, 3), (None,)])
  x = rng.normal(size=(3, 3)).astype(np.float32)
  layer.kernel.assign(x)
  a_to_b, b_to_a = layer((user_a, user_b, overlap))
  np.testing.assert_allclose(a_to_b.numpy(), (x @ user_a.T).T, rtol=1e-5)  # X u_A
  np.testing.assert_allclose(b_to_a.numpy(), (x.T @ user_b.T).T, rtol=1e-5)  # X^T u_B
  eq1 = np.mean(np.sum(((x @ user_a.T).T - user_b)[overlap] ** 2, 1))
  eq2 = np.mean(np.sum((user_a - (x.T @ user_b.T).T)[overlap] ** 2, 1))
  orthogonality = 0.7 * np.sum((x.T @ x - np.eye(3)) ** 2)
  np.testing.assert_allclose(sum(float(l) for l in layer.losses),
                             0.2 * (eq1 + eq2) + orthogonality, rtol=1e-5)


def test_no_overlap_users_adds_no_dual_loss():
  layer = DualEmbedding(dual_weight=1.0, orthogonality_weight=0.0)
  layer((tf.ones([3, 2]), tf.zeros([3, 2]), tf.zeros([3], tf.bool)))
  assert [float(l) for l in layer.losses] == [0.0]


def test_training_keeps_the_kernel_orthogonal():
  """Gradient steps on eq. (1)-(2) with retraction leave ||X^T X - I||_F < 1e-2."""
  tf_keras.utils.set_random_seed(0)
  user_a = tf.random.normal([64, 8])
  user_b = tf.random.normal([64, 8]) * 3.0
  layer = DualEmbedding(dual_weight=1.0, orthogonality_weight=1.0, seed=0)
  optimizer = tf_keras.optimizers.Adam(0.01)
  layer((user_a, user_b, tf.ones([64], tf.bool)))
  for _ in range(50):
    with tf.GradientTape() as tape:
      layer((user_a, user_b, tf.ones([64], tf.bool)))
      loss = tf.add_n(layer.losses)
    optimizer.apply_gradients(zip(tape.gradient(loss, [layer.kernel]), [layer.kernel]))
  assert float(layer.orthogonality_residual()) < 1e-2


@pytest.mark.parametrize("make", [
    lambda: DualEmbedding(dual_weight=-1.0),
    lambda: OrthogonalityRegularizer(-0.1),
    lambda: OrthogonalRetraction(steps=0),
])
def test_rejects_bad_arguments(make):
  with pytest.raises(ValueError):
    make()


def test_rejects_mismatched_sizes():
  with pytest.raises(ValueError, match="same size"):
    DualEmbedding()((tf.ones([2, 3]), tf.ones([2, 4]), tf.ones([2], tf.bool)))


@pytest.mark.parametrize("init_kwargs, num_losses", [
    (dict(dual_weight=0.3, orthogonality_weight=0.5, seed=1), 2),  # eq. (1)+(2), the penalty
    (dict(dual_weight=0.3, orthogonality_weight=0.0, retraction_steps=0, seed=1), 1),
])
def test_layer_contract(init_kwargs, num_losses, tmp_path):
  user_a, user_b = layer_testing.random_inputs([(4, 3), (4, 3)])
  layer_testing.run_layer_test(
      DualEmbedding, init_kwargs, str(tmp_path),
      input_data=(user_a, user_b, tf.constant([True, False, True, True])),
      expected_output_shape=[(4, 3), (4, 3)], expected_num_trainable_weights=1,
      expected_num_losses=num_losses)


def test_regularizer_and_constraint_serialize():
  reg = tf_keras.regularizers.deserialize(
      tf_keras.regularizers.serialize(OrthogonalityRegularizer(0.4)))
  assert isinstance(reg, OrthogonalityRegularizer) and reg.weight == 0.4
  con = tf_keras.constraints.deserialize(tf_keras.constraints.serialize(OrthogonalRetraction(3)))
  assert isinstance(con, OrthogonalRetraction) and con.steps == 3
