"""Dual Embedding: eq. (1)-(2) over overlap users, the orthogonality penalty and retraction."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf.layers import (DualEmbedding, MultiDomainEmbedding, OrthogonalityRegularizer,
                            OrthogonalRetraction, orthogonality_residual)
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


def _random_orthogonal(rng, dim):
  q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  return q.astype(np.float32)


def test_multi_domain_maps_and_losses_match_numpy():
  """K = 3: M_{d->e} = X_e X_d^T (X_0 = I), eq. (1)-(2) over each pair's common users."""
  rng = np.random.default_rng(20)
  users = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]
  present = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1]], bool)
  layer = MultiDomainEmbedding(domain_names=("x", "y", "z"), dual_weight=0.2,
                               orthogonality_weight=0.7, seed=0)
  layer.build([[(None, 3)] * 3, (None, 3)])
  # Not orthogonal, so that a transpose taken for an inverse (or the wrong side) shows.
  kernels = [np.eye(3, dtype=np.float32)] + [rng.normal(size=(3, 3)).astype(np.float32)
                                             for _ in range(2)]
  for variable, value in zip(layer.kernels, kernels[1:]):
    variable.assign(value)
  mapped = layer((users, present)).numpy()
  assert [v.name.split("/")[-1].split(":")[0] for v in layer.kernels] == ["kernel_y", "kernel_z"]
  dual = 0.0
  for d in range(3):
    for e in range(3):
      np.testing.assert_allclose(mapped[:, d, e], (kernels[e] @ kernels[d].T @ users[d].T).T,
                                 rtol=1e-5, atol=1e-6)
      if d < e:
        both = present[:, d] & present[:, e]
        forward = (kernels[e] @ kernels[d].T @ users[d].T).T - users[e]
        backward = users[d] - (kernels[d] @ kernels[e].T @ users[e].T).T
        dual += np.mean(np.sum(forward[both] ** 2, 1)) + np.mean(np.sum(backward[both] ** 2, 1))
  orthogonality = 0.7 * sum(np.sum((x.T @ x - np.eye(3)) ** 2) for x in kernels[1:])
  np.testing.assert_allclose(sum(float(l) for l in layer.losses), 0.2 * dual + orthogonality,
                             rtol=1e-5)


def test_multi_domain_with_two_domains_equals_dual_embedding_on_the_same_kernel():
  rng = np.random.default_rng(21)
  user_a, user_b = (rng.normal(size=(5, 4)).astype(np.float32) for _ in range(2))
  overlap = np.array([True, False, True, True, False])
  pair = DualEmbedding(dual_weight=0.3, orthogonality_weight=0.5, seed=3)
  many = MultiDomainEmbedding(dual_weight=0.3, orthogonality_weight=0.5, seed=3)
  a_to_b, b_to_a = pair((user_a, user_b, overlap))
  # Users outside the overlap are present in one domain only.
  present = np.stack([np.ones(5, bool), overlap], 1)
  mapped = many(((user_a, user_b), present))
  np.testing.assert_array_equal(many.kernels[0].numpy(), pair.kernel.numpy())  # same seed
  many.kernels[0].assign(rng.normal(size=(4, 4)))
  pair.kernel.assign(many.kernels[0])
  a_to_b, b_to_a = pair((user_a, user_b, overlap))
  mapped = many(((user_a, user_b), present))
  np.testing.assert_allclose(mapped[:, 0, 1].numpy(), a_to_b.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mapped[:, 1, 0].numpy(), b_to_a.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sum(float(l) for l in many.losses),
                             sum(float(l) for l in pair.losses), rtol=1e-5)


def test_multi_domain_maps_compose_and_invert_when_orthogonal():
  rng = np.random.default_rng(22)
  users = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
  layer = MultiDomainEmbedding(domain_names=("x", "y", "z"), seed=4)
  layer((users, np.ones((3, 3), bool)))
  for variable in layer.kernels:
    variable.assign(_random_orthogonal(rng, 4))
  mapped = layer((users, np.ones((3, 3), bool)))
  # x -> y then y -> z equals x -> z; z -> x undoes x -> z.
  via_y = layer(([mapped[:, 0, 1]] * 3, np.ones((3, 3), bool)))[:, 1, 2]
  np.testing.assert_allclose(via_y.numpy(), mapped[:, 0, 2].numpy(), rtol=1e-5, atol=1e-5)
  back = layer(([mapped[:, 0, 2]] * 3, np.ones((3, 3), bool)))[:, 2, 0]
  np.testing.assert_allclose(back.numpy(), users[0], rtol=1e-5, atol=1e-5)


def test_multi_domain_training_keeps_every_kernel_orthogonal():
  tf_keras.utils.set_random_seed(0)
  users = [tf.random.normal([64, 6]) * scale for scale in (1.0, 2.0, 3.0)]
  present = tf.ones([64, 3], tf.bool)
  layer = MultiDomainEmbedding(domain_names=("x", "y", "z"), dual_weight=1.0, seed=0)
  optimizer = tf_keras.optimizers.Adam(0.01)
  layer((users, present))
  for _ in range(30):
    with tf.GradientTape() as tape:
      layer((users, present))
      loss = tf.add_n(layer.losses)
    optimizer.apply_gradients(zip(tape.gradient(loss, layer.kernels), layer.kernels))
  assert max(float(r) for r in layer.orthogonality_residuals()) < 1e-2


@pytest.mark.parametrize("kwargs, inputs, match", [
    (dict(domain_names=("x",)), None, "domain_names"),
    (dict(domain_names=("x", "x")), None, "domain_names"),
    (dict(dual_weight=-1.0), None, "weights"),
    (dict(domain_names=("x", "y", "z")), ([tf.ones([2, 3])] * 2, tf.ones([2, 3], tf.bool)),
     "3 user embeddings"),
    (dict(), ((tf.ones([2, 3]), tf.ones([2, 4])), tf.ones([2, 2], tf.bool)), "one size"),
    (dict(), ((tf.ones([2, 3]), tf.ones([2, 3])), tf.ones([2, 3], tf.bool)), r"\[batch, 2\]"),
])
def test_multi_domain_rejects_bad_arguments_and_inputs(kwargs, inputs, match):
  with pytest.raises(ValueError, match=match):
    MultiDomainEmbedding(**kwargs)(inputs)


def test_multi_domain_layer_contract(tmp_path):
  users = layer_testing.random_inputs([(4, 3)] * 3)
  present = tf.constant([[True, True, False], [True, True, True], [False, True, True],
                         [True, False, True]])
  layer_testing.run_layer_test(
      MultiDomainEmbedding, dict(domain_names=("x", "y", "z"), dual_weight=0.3, seed=1),
      str(tmp_path), input_data=(tuple(users), present), expected_output_shape=(4, 3, 3, 3),
      expected_num_trainable_weights=2, expected_num_losses=3)
