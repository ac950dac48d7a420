"""CandidateInteraction: candidate ⊙ projected context, per candidate or broadcast."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import CandidateInteraction
from tests import keras_testing


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


def test_keras_contract(tmp_path):
  inputs = [tf.random.normal([2, 3, 4]), tf.random.normal([2, 3, 5]), tf.random.normal([2, 6])]
  keras_testing.check_keras_layer(lambda: CandidateInteraction(l2=0.01), inputs, str(tmp_path))
