"""The two-headed ranking model every dasl_tf model (DASL, ablations, baselines) derives from.

A subclass implements one method, :meth:`CrossDomainRanker.head_logits`: score
``C`` candidate items per example with head A (items of domain A) and head B
(items of domain B). This base class turns it into

* ``call(features)``: the logits of the example's target item under both heads,
* :meth:`score_candidates`: each example's candidates scored by the head of its
  own domain (HR@K evaluation, the ``recommend`` serving signature); only
  that head runs when the batch is of one domain (:meth:`domain_logits`),
* :meth:`predict_ctr`: named click probabilities for serving,
* ``compute_loss``: one ``tfrs.tasks.Ranking`` per head, each on the examples
  of its domain, both in the same step; regularisation losses of the layers
  (orthogonality, dual embedding, reconstruction) are added by ``tfrs.Model``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F


def _ranking_task(head: str) -> tfrs.tasks.Ranking:
  return tfrs.tasks.Ranking(
      loss=tf_keras.losses.BinaryCrossentropy(
          from_logits=True, reduction=tf_keras.losses.Reduction.NONE),
      metrics=[tf_keras.metrics.AUC(name=f"auc_{head}", from_logits=True)],
      loss_metrics=[tf_keras.metrics.Mean(name=f"loss_{head}")],
      name=f"ranking_{head}")


class CrossDomainRanker(tfrs.Model):
  """Base class of two-headed cross-domain CTR models.

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig`.
    name: Keras name of the model.
  """

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(name=name or config.variant, **kwargs)
    self.model_config = config
    self.task_a = _ranking_task("a")
    self.task_b = _ranking_task("b")

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """Scores candidates with both heads.

    Args:
      features: a batch of model inputs (see :mod:`dasl_tf.features`).
      candidates: int64 ``[batch, C]`` item indices. Head A reads them in domain
        A's vocabulary, head B in domain B's.
      training: whether dropout and similar layers run in training mode.

    Returns:
      ``(logits_a, logits_b)``, each float32 ``[batch, C]``.
    """
    raise NotImplementedError

  def call(self, features: Dict[str, tf.Tensor], training: bool = False
           ) -> Dict[str, tf.Tensor]:
    logits_a, logits_b = self.head_logits(
        features, tf.expand_dims(features[F.ITEM_ID], 1), training=training)
    return {"logit_a": logits_a[:, 0], "logit_b": logits_b[:, 0]}

  def domain_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                    domain: int, training: bool = False) -> tf.Tensor:
    """Scores ``[batch, C]`` candidates with the head of ``domain`` (0 = A, 1 = B).

    This default computes both heads and keeps one; a subclass whose heads
    can run alone overrides it to compute only the one asked for.
    """
    return self.head_logits(features, candidates, training=training)[domain]

  def score_candidates(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                       training: bool = False) -> tf.Tensor:
    """Logits ``[batch, C]`` of each example's candidates, by the head of its domain.

    When every example of the batch is of one domain (a ``recommend``
    request, usually) only that head runs (:meth:`domain_logits`); a batch
    mixing both domains runs both heads and picks per example.
    """
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)

    def both_heads() -> tf.Tensor:
      logits_a, logits_b = self.head_logits(features, candidates, training=training)
      return tf.where(in_a[:, None], logits_a, logits_b)

    return tf.case(
        [(tf.reduce_all(in_a),
          lambda: self.domain_logits(features, candidates, F.DOMAIN_A, training=training)),
         (tf.reduce_all(~in_a),
          lambda: self.domain_logits(features, candidates, F.DOMAIN_B, training=training))],
        default=both_heads)

  def predict_ctr(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Click probabilities: ``ctr_a``/``ctr_b`` per head, ``ctr`` by the example's own domain."""
    logits = self(features, training=False)
    ctr_a = tf.sigmoid(logits["logit_a"])
    ctr_b = tf.sigmoid(logits["logit_b"])
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
    return {"ctr_a": ctr_a, "ctr_b": ctr_b, "ctr": tf.where(in_a, ctr_a, ctr_b)}

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    features, labels = inputs
    logits = self(features, training=training)
    # Keras losses reduce the last axis: give them [batch, 1] so each example keeps its weight.
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])
    weight_a = tf.cast(tf.equal(features[F.DOMAIN], F.DOMAIN_A), tf.float32)
    loss_a = self.task_a(labels=labels, predictions=logits["logit_a"][:, None],
                         sample_weight=weight_a, training=training)
    loss_b = self.task_b(labels=labels, predictions=logits["logit_b"][:, None],
                         sample_weight=1.0 - weight_a, training=training)
    # Mean over the global batch, so replicas' gradients sum to the batch mean
    # under any tf.distribute strategy (and equal it without one).
    return tf.nn.compute_average_loss(loss_a + loss_b)

  def train_step(self, inputs):
    """tfrs's step, with the regularisation losses counted once across replicas."""
    with tf.GradientTape() as tape:
      loss = self.compute_loss(inputs, training=True)
      regularization_loss = tf.nn.scale_regularization_loss(
          tf.reduce_sum([tf.reduce_sum(loss) for loss in self.losses]))
      total_loss = loss + regularization_loss
    gradients = tape.gradient(total_loss, self.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    metrics = {metric.name: metric.result() for metric in self.metrics}
    metrics.update(loss=loss, regularization_loss=regularization_loss, total_loss=total_loss)
    return metrics

  def get_config(self):
    return {"config": self.model_config.to_dict(), "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(config_lib.ModelConfig.from_dict(config["config"]), name=config.get("name"))
