"""Keras 3 cases, run by ``tests/test_keras3.py`` in a process without ``TF_USE_LEGACY_KERAS``.

Not collected by ``make test`` itself (the name does not start with
``test_``); in a Keras 2 process the module skips.
"""
import json
import os

import numpy as np
import pytest

from dasl_tf import keras_select

if keras_select.active_keras() != keras_select.KERAS3:
  pytest.skip("Keras 3 cases: run by tests/test_keras3.py without TF_USE_LEGACY_KERAS",
              allow_module_level=True)

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dasl_tf import features as F  # noqa: E402
from dasl_tf import keras3  # noqa: E402
from dasl_tf import layers  # noqa: E402
from dasl_tf.layers import keras2  # noqa: E402
from tests import test_keras3 as support  # noqa: E402


@keras.saving.register_keras_serializable(package="dasl_tf_tests")
class TwoDomainModel(keras.Model):
  """A user's own model: id embeddings, GRUs, Dual Embedding and Dual Attention, one logit."""

  def __init__(self, num_users, num_items, dim=8, **kwargs):
    super().__init__(**kwargs)
    self.num_users, self.num_items, self.dim = num_users, num_items, dim
    self.users = keras.layers.Embedding(num_users, dim)
    self.items = [keras.layers.Embedding(num_items, dim) for _ in F.DOMAINS]
    self.encoders = [layers.SequenceEncoder(dim) for _ in F.DOMAINS]
    self.dual_embedding = layers.DualEmbedding(dual_weight=0.1, seed=0)
    self.user_b = keras.layers.Dense(dim, use_bias=False)
    self.attention = layers.DualAttention(key_dim=dim)
    self.head = keras.layers.Dense(1)

  def call(self, features):
    hist = [tf.cast(features[name], "int64") for name in (F.HIST_A, F.HIST_B)]
    masks = [tf.not_equal(h, F.PAD_ID) for h in hist]
    records = [encoder(items(h), mask=m)[0]
               for encoder, items, h, m in zip(self.encoders, self.items, hist, masks)]
    user_a = self.users(tf.cast(features[F.USER_ID], "int64"))
    overlap = tf.reduce_any(masks[0], 1) & tf.reduce_any(masks[1], 1)
    a_to_b, b_to_a = self.dual_embedding((user_a, self.user_b(user_a), overlap))
    target = [items(tf.cast(features[F.ITEM_ID], "int64"))[:, None] for items in self.items]
    attended = self.attention({"query_a": target[0], "query_b": target[1],
                               "records_a": records[0], "records_b": records[1],
                               "mask_a": masks[0], "mask_b": masks[1]})
    in_a = tf.equal(tf.cast(features[F.DOMAIN], "int64"), F.DOMAIN_A)[:, None]
    own = tf.where(in_a, attended[0][:, 0], attended[1][:, 0])
    candidate = tf.where(in_a, target[0][:, 0], target[1][:, 0])
    return self.head(tf.concat([own, candidate, user_a, a_to_b, b_to_a], -1))[:, 0]

  def get_config(self):
    return dict(super().get_config(), num_users=self.num_users, num_items=self.num_items,
                dim=self.dim)


def test_subclassed_model_of_the_layers_trains_saves_and_reloads(tmp_path):
  (train, labels), (test, _) = support.planted_split(0)
  keras.utils.set_random_seed(0)
  model = TwoDomainModel(support.dasl_vocabulary()["num_users"], 12)
  model.compile(keras.optimizers.Adam(0.02), keras.losses.BinaryCrossentropy(from_logits=True))
  history = model.fit(train, labels, epochs=4, batch_size=32, shuffle=False, verbose=0)
  losses = history.history["loss"]
  assert losses[-1] < 0.8 * losses[0], losses
  # The dasl_tf layers' weights are the model's: 2 GRUs x 3, X, 6 projections (+ 6 Keras).
  dasl_weights = [w for layer in (*model.encoders, model.dual_embedding, model.attention)
                  for w in layer.trainable_weights]
  assert len(dasl_weights) == 13
  assert {id(w) for w in dasl_weights} <= {id(w) for w in model.trainable_weights}
  assert len(model.losses) == 2  # eq. (1)+(2) and the orthogonality penalty
  path = str(tmp_path / "model.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  np.testing.assert_allclose(reloaded.predict(test, verbose=0), model.predict(test, verbose=0),
                             rtol=1e-5, atol=1e-6)


def test_dasl_fits_saves_and_reloads(tmp_path):
  """The Keras 3 DASL on the planted data of each seed of the runner; its test AUCs go to it."""
  seeds = [int(seed) for seed in os.environ.get(support.SEEDS_ENV, "0").split(",")]
  aucs = []
  for seed in seeds:
    (train, labels), (test, test_labels) = support.planted_split(seed)
    keras.utils.set_random_seed(seed)
    model = keras3.DASL(**support.dasl_vocabulary(), **support.DASL_SIZES)
    model.compile(keras.optimizers.Adam(support.LEARNING_RATE),
                  keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit(train, labels, epochs=support.EPOCHS, batch_size=support.BATCH_SIZE,
                        shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    scores = model.predict(test, verbose=0)
    aucs.append(support.numpy_auc(test_labels, scores))
  path = str(tmp_path / "dasl.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  assert type(reloaded) is keras3.DASL
  np.testing.assert_allclose(reloaded.predict(test, verbose=0), scores, rtol=1e-5, atol=1e-6)
  if os.environ.get(support.OUTPUT_ENV):
    with open(os.path.join(os.environ[support.OUTPUT_ENV], support.AUC_FILE), "w",
              encoding="utf-8") as f:
      json.dump(aucs, f)


def test_tf_keras_layer_in_a_keras3_model_is_an_error():
  """The silent failure of a tf_keras layer in a Keras 3 model (0 weights trained) is an error."""
  message = r"Keras 2 \(tf_keras\) layer.*Keras 3 \(keras\).*from dasl_tf.layers.keras3 import MLP"
  with pytest.raises(TypeError, match=message):
    keras2.MLP((4,), 1)(keras.Input((3,)))

  class Holder(keras.Model):

    def __init__(self):
      super().__init__()
      self.head = keras2.MLP((4,), 1)

    def call(self, inputs):
      return self.head(inputs)

  model = Holder()
  model.compile("sgd", "mse")
  with pytest.raises(TypeError, match=message):
    model.fit(np.ones((4, 3), np.float32), np.ones((4, 1), np.float32), verbose=0)


def test_require_keras2_after_tf_keras_bound_to_keras3_fails_clearly():
  tf.keras.layers  # pylint: disable=pointless-statement  (binds tf.keras, to Keras 3 here)
  with pytest.raises(ImportError, match="TF_USE_LEGACY_KERAS=1 before TensorFlow's first import"):
    keras_select.require_keras2("the job")
  assert "TF_USE_LEGACY_KERAS" not in os.environ
