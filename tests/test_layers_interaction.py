"""CandidateInteraction: candidate ⊙ projected context, per candidate or broadcast."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import CandidateInteraction
from tests import layer_testing


def test_matches_numpy_products_and_broadcasts_shared_contexts():
  rng = np.random.default_rng(0)
  candidates = rng.normal(size=(2, 3, 4)).astype(np.float32)
  per_candidate = rng.normal(size=(2, 3, 5)).astype(np.float32)
  shared = rng.normal(size=(2, 6)).astype(np.float32)
  layer = CandidateInteraction()
  output = layer([candidates, per_candidate, shared]).numpy()
  projection_0, projection_1 = layer.get_weights()
  expected = np.concatenate([candidates * (per_candidate @ projection_0),
                             candidates * (shared @ projection_1)[:, None, :]], -1)
  np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)


def test_l2_adds_one_loss_per_projection():
  layer = CandidateInteraction(l2=0.1)
  layer([tf.ones([1, 2, 3]), tf.ones([1, 4]), tf.ones([1, 2, 5])])
  kernels = [w.numpy() for w in layer.trainable_weights]
  np.testing.assert_allclose(sum(float(loss) for loss in layer.losses),
                             sum(0.1 * np.sum(k ** 2) for k in kernels), rtol=1e-5)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="l2"):
    CandidateInteraction(l2=-1.0)
  with pytest.raises(ValueError, match="candidates, context"):
    CandidateInteraction()([tf.ones([1, 2, 3])])


@pytest.mark.parametrize("l2, num_losses", [(0.0, 0), (0.01, 2)])
def test_layer_contract(l2, num_losses, tmp_path):
  """A per-candidate and a shared context: one projection each."""
  layer_testing.run_layer_test(
      CandidateInteraction, dict(l2=l2), str(tmp_path), input_shape=[(2, 3, 4), (2, 3, 5), (2, 6)],
      expected_output_shape=(2, 3, 8), expected_num_trainable_weights=2,
      expected_num_losses=num_losses)
