"""FeatureAutoencoder: id-only embedding, side-feature encoding and its reconstruction loss."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import FeatureAutoencoder
from tests import layer_testing
from tests.test_layers_mlp import mlp_numpy


def test_id_only_is_the_embedding_with_oov_mapping():
  layer = FeatureAutoencoder(vocab_size=6, embedding_dim=3)
  out = layer(tf.constant([[2, 5], [9, -1]], tf.int64)).numpy()
  table = layer.get_weights()[0]
  np.testing.assert_allclose(out, table[[[2, 5], [1, 1]]])
  assert layer.losses == []


def test_side_features_encoding_and_reconstruction_loss_match_numpy():
  layer = FeatureAutoencoder(vocab_size=7, embedding_dim=4, numeric_dim=2,
                             categorical_vocab_sizes=(3, 5), hidden_units=(6,),
                             categorical_embedding_dim=2, reconstruction_weight=0.5)
  rng = np.random.default_rng(0)
  ids = np.array([2, 3, 6, 4])
  numeric = rng.normal(size=(4, 2)).astype(np.float32)
  categorical = np.array([[0, 4], [2, 1], [1, 3], [2, 0]])
  weight = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
  latent = layer({"id": ids, "numeric": numeric, "categorical": categorical,
                  "sample_weight": weight}).numpy()

  # Inference-mode BatchNormalization before any training: (x - 0) / sqrt(1 + epsilon).
  standardized = numeric / np.sqrt(1.0 + 1e-3)
  x = np.concatenate([layer._id_embedding.get_weights()[0][ids], standardized,
                      layer._categorical_embeddings[0].get_weights()[0][categorical[:, 0]],
                      layer._categorical_embeddings[1].get_weights()[0][categorical[:, 1]]], 1)
  expected_latent = mlp_numpy(layer._encoder, x)
  np.testing.assert_allclose(latent, expected_latent, rtol=1e-5, atol=1e-6)

  recon = mlp_numpy(layer._decoder, expected_latent)
  error = np.sum((standardized - recon[:, :2]) ** 2, 1)
  for column, (lo, hi) in enumerate([(2, 5), (5, 10)]):
    logits = recon[:, lo:hi]
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    error -= log_probs[np.arange(4), categorical[:, column]]
  expected_loss = 0.5 * np.sum(weight * error) / weight.sum()
  assert len(layer.losses) == 1
  np.testing.assert_allclose(layer.losses[0].numpy(), expected_loss, rtol=1e-5)


def test_ids_only_call_zero_fills_side_features_without_loss():
  layer = FeatureAutoencoder(vocab_size=5, embedding_dim=3, numeric_dim=2, hidden_units=(4,))
  ids = tf.constant([[2, 3]], tf.int64)
  zero_filled = layer({"id": ids, "numeric": tf.zeros([1, 2, 2])})
  assert len(layer.losses) == 1
  ids_only = layer(ids)
  assert layer.losses == []
  np.testing.assert_allclose(ids_only.numpy(), zero_filled.numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=0, embedding_dim=2), "positive"),
    (dict(vocab_size=5, embedding_dim=2, categorical_vocab_sizes=(0,)), "categorical"),
    (dict(vocab_size=5, embedding_dim=2, reconstruction_weight=-1.0), "weights"),
    (dict(vocab_size=2, embedding_dim=2, oov_id=3), "oov_id"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    FeatureAutoencoder(**kwargs)


def test_rejects_unknown_input_keys():
  with pytest.raises(ValueError, match="numerics"):
    FeatureAutoencoder(vocab_size=5, embedding_dim=2)({"id": tf.constant([2]),
                                                       "numerics": tf.zeros([1, 1])})


def test_encode_side_features_false_keeps_the_latent_of_the_id():
  layer = FeatureAutoencoder(vocab_size=5, embedding_dim=3, numeric_dim=2, hidden_units=(4,),
                             encode_side_features=False)
  ids = tf.constant([2, 3], tf.int64)
  with_features = layer({"id": ids, "numeric": tf.ones([2, 2])})
  assert len(layer.losses) == 1
  np.testing.assert_allclose(layer(ids).numpy(), with_features.numpy(), atol=1e-6)


def test_training_mode_standardizes_numeric_features_by_the_batch():
  layer = FeatureAutoencoder(vocab_size=5, embedding_dim=3, numeric_dim=1, hidden_units=(4,),
                             encode_side_features=False, reconstruction_weight=1.0)
  ids = tf.constant([2, 3, 4], tf.int64)
  scaled = layer({"id": ids, "numeric": tf.constant([[100.0], [200.0], [300.0]])}, training=True)
  loss_scaled = float(layer.losses[0])
  layer({"id": ids, "numeric": tf.constant([[1.0], [2.0], [3.0]])}, training=True)
  np.testing.assert_allclose(float(layer.losses[0]), loss_scaled, rtol=5e-3)
  assert scaled.shape == [3, 3]


_SIDE_FEATURES = dict(vocab_size=8, embedding_dim=4, numeric_dim=2, categorical_vocab_sizes=(3,),
                     hidden_units=(5,))


@pytest.mark.parametrize("init_kwargs, num_trainable, num_non_trainable, num_losses", [
    (dict(vocab_size=8, embedding_dim=4), 1, 0, 0),  # the id embedding
    # id and categorical embeddings, encoder and decoder (2 x 2 kernels and biases);
    # the batch normalisation's moving mean and variance.
    (_SIDE_FEATURES, 10, 2, 1),
    (dict(_SIDE_FEATURES, encode_side_features=False), 9, 2, 1),  # no categorical embedding
])
def test_layer_contract(init_kwargs, num_trainable, num_non_trainable, num_losses, tmp_path):
  ids = tf.constant([2, 4, 9], tf.int64)  # 9 is outside the vocabulary.
  inputs = {"id": ids, "numeric": tf.ones([3, 2]),
            "categorical": tf.constant([[1], [2], [0]], tf.int64)
            } if "numeric_dim" in init_kwargs else ids
  layer_testing.run_layer_test(
      FeatureAutoencoder, init_kwargs, str(tmp_path), input_data=inputs,
      expected_output_shape=(3, 4), expected_num_trainable_weights=num_trainable,
      expected_num_non_trainable_weights=num_non_trainable, expected_num_losses=num_losses)
