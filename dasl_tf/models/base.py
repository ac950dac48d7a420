"""The two-headed ranking model every dasl_tf model (DASL, ablations, baselines) derives from.

A subclass implements one method, :meth:`CrossDomainRanker.head_logits`: score
``C`` candidate items per example with head A (items of domain A) and head B
(items of domain B). This base class turns it into

* ``call(features)``: the logits of the example's target item under both heads,
* :meth:`score_candidates`: each example's candidates ranked for top-n by the
  head of its own domain, ``s_D(u, i) + b_D(i)`` (HR@K evaluation, the
  ``recommend`` serving signature): the head's CTR logit plus a per-item prior
  ``b_D`` that only the ranking loss trains (zero for a pure CTR model); only
  that head runs when the batch is of one domain (:meth:`domain_outputs`),
* :meth:`predict_ctr`: named click probabilities for serving,
* ``compute_loss``: one ``tfrs.tasks.Ranking`` per head, each on the examples
  of its domain, both in the same step, plus the ranking loss over the
  examples' sampled ``train_negatives`` when the batch has them
  (:mod:`dasl_tf.losses`), on the ranking scores ``s_D + b_D`` of the target
  and its negatives; regularisation losses of the layers
  (orthogonality, dual embedding, reconstruction) are added by ``tfrs.Model``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf import losses as losses_lib


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

  Raises:
    ValueError: a vocabulary is smaller than the reserved ids.
  """

  learns = True
  """Whether the model is trained by gradient steps (else ``adapt`` fits it in one pass)."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    for field in ("num_users", "num_items_a", "num_items_b"):
      if getattr(config, field) < F.NUM_RESERVED_IDS:
        raise ValueError(
            f"{config.variant}: ModelConfig.{field}={getattr(config, field)} is smaller than "
            f"the {F.NUM_RESERVED_IDS} reserved ids; take vocabulary sizes from schema.json")
    super().__init__(name=name or config.variant, **kwargs)
    self.model_config = config
    self.task_a = _ranking_task("a")
    self.task_b = _ranking_task("b")
    self.ranking_loss_metric = tf_keras.metrics.Mean(name="ranking_loss")
    self.item_priors = [
        tf_keras.layers.Embedding(size, 1, embeddings_initializer="zeros",
                                  name=f"item_prior_{F.DOMAIN_SUFFIX[d]}")
        for d, size in zip(F.DOMAINS, (config.num_items_a, config.num_items_b))]
    for prior in self.item_priors:  # built now: `call` (which builds the rest) never reads them
      prior.build((None,))

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

  def head_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                   training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """Every output of both heads, ``[batch, C, U]`` each: the CTR logit first.

    A model whose heads also have a relevance output (``U = 2``, see
    :attr:`has_relevance`) overrides this; the default is the CTR logit alone.
    """
    return tuple(x[..., None] for x in self.head_logits(features, candidates, training))

  @property
  def has_relevance(self) -> bool:
    """Whether the heads' second output is a relevance logit trained by the ranking loss."""
    return False

  def call(self, features: Dict[str, tf.Tensor], training: bool = False
           ) -> Dict[str, tf.Tensor]:
    logits_a, logits_b = self.head_logits(
        features, tf.expand_dims(features[F.ITEM_ID], 1), training=training)
    return {"logit_a": logits_a[:, 0], "logit_b": logits_b[:, 0]}

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    """The outputs ``[batch, C, U]`` of the head of ``domain`` (0 = A, 1 = B) alone.

    This default computes both heads and keeps one; a subclass whose heads
    can run alone overrides it to compute only the one asked for.
    """
    return self.head_outputs(features, candidates, training=training)[domain]

  def candidate_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                        training: bool = False) -> tf.Tensor:
    """The outputs ``[batch, C, U]`` of candidates, each by its example's domain's head.

    When every example of the batch is of one domain (a ``recommend``
    request, usually) only that head runs (:meth:`domain_outputs`); a batch
    mixing both domains runs both heads and picks per example.
    """
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)

    def both_heads() -> tf.Tensor:
      outputs_a, outputs_b = self.head_outputs(features, candidates, training=training)
      return tf.where(in_a[:, None, None], outputs_a, outputs_b)

    return tf.case(
        [(tf.reduce_all(in_a),
          lambda: self.domain_outputs(features, candidates, F.DOMAIN_A, training=training)),
         (tf.reduce_all(~in_a),
          lambda: self.domain_outputs(features, candidates, F.DOMAIN_B, training=training))],
        default=both_heads)

  def candidate_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                       training: bool = False) -> tf.Tensor:
    """The CTR logits ``[batch, C]`` of candidates, each by its example's domain's head."""
    return self.candidate_outputs(features, candidates, training=training)[..., 0]

  def score_candidates(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                       training: bool = False) -> tf.Tensor:
    """Top-n scores ``[batch, C]`` of each example's candidates (higher = ranked first).

    See :meth:`top_n_scores`; the head of each example's domain scores its
    candidates (:meth:`candidate_outputs`).
    """
    return self.top_n_scores(self.candidate_outputs(features, candidates, training=training),
                             self.item_prior(features, candidates))

  def top_n_scores(self, outputs: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """Top-n scores from head outputs ``[..., U]`` and item priors ``[...]``.

    The ranking score of :meth:`ranking_scores`: ``r + b`` with a relevance
    output ``r``, else ``s + b`` (``s`` the CTR logit). The CTR logit is not
    part of a relevance model's top-n score: it is trained on rated items only
    and ranks unseen items no better than chance (measured in BUILD.md).
    """
    return self.ranking_scores(outputs, prior)

  def ranking_scores(self, outputs: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """What the ranking loss compares: ``r + b`` with a relevance output, else ``s + b``."""
    return outputs[..., 1 if self.has_relevance else 0] + prior

  def item_prior(self, features: Dict[str, tf.Tensor], items: tf.Tensor) -> tf.Tensor:
    """``b_D(i)`` ``[batch, C]`` of items ``[batch, C]`` in each example's domain D."""
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
    return tf.where(in_a[:, None], self.domain_prior(items, F.DOMAIN_A),
                    self.domain_prior(items, F.DOMAIN_B))

  def domain_prior(self, items: tf.Tensor, domain: int) -> tf.Tensor:
    """``b_D(i)`` of items (any shape) of domain ``domain``; unknown ids read the OOV row."""
    size = tf.cast(self.item_priors[domain].input_dim, items.dtype)
    known = tf.where((items >= 0) & (items < size), items, tf.cast(F.OOV_ID, items.dtype))
    return tf.squeeze(self.item_priors[domain](known), -1)

  def count_positives(self, dataset: tf.data.Dataset) -> List[tf.Tensor]:
    """Clicked examples per item of each domain over ``(features, labels)`` batches."""
    sizes = (self.model_config.num_items_a, self.model_config.num_items_b)
    counts = [tf.zeros([size]) for size in sizes]
    examples = 0
    for features, labels in dataset:
      clicked = tf.cast(labels > 0.5, tf.float32)
      items = features[F.ITEM_ID]
      for d in F.DOMAINS:
        in_domain = tf.cast(tf.equal(features[F.DOMAIN], d), tf.float32)
        known = tf.where((items >= 0) & (items < sizes[d]), items, F.OOV_ID)
        counts[d] += tf.math.unsorted_segment_sum(clicked * in_domain, known, sizes[d])
      examples += int(tf.shape(labels)[0])
    logging.info("counted the clicks of %d training examples per item", examples)
    return counts

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Starts the item priors at ``log(1 + clicks per item)`` over the training ``dataset``.

    Called once before training with the ranking objective, so that the
    top-n score starts from the popularity ranking and training refines it.
    """
    for prior, count in zip(self.item_priors, self.count_positives(dataset)):
      prior.embeddings.assign(tf.math.log1p(count)[:, None])

  def predict_ctr(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Click probabilities: ``ctr_a``/``ctr_b`` per head, ``ctr`` by the example's own domain."""
    logits = self(features, training=False)
    ctr_a = tf.sigmoid(logits["logit_a"])
    ctr_b = tf.sigmoid(logits["logit_b"])
    in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
    return {"ctr_a": ctr_a, "ctr_b": ctr_b, "ctr": tf.where(in_a, ctr_a, ctr_b)}

  def training_logits(self, features: Dict[str, tf.Tensor], training: bool = False
                      ) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Head outputs the loss reads, each by the head of the example's own domain.

    This default runs ``call`` (both heads) for the target and
    :meth:`candidate_outputs` for the negatives; DASL overrides it with one
    pass that computes the user context once and each example's own head only.

    Returns:
      ``(target [B, U], negatives [B, k, U] or None when the batch has no
      ``train_negatives``)``.
    """
    if F.TRAIN_NEGATIVES not in features:
      logits = self(features, training=training)
      in_a = tf.equal(features[F.DOMAIN], F.DOMAIN_A)
      return tf.where(in_a, logits["logit_a"], logits["logit_b"])[:, None], None
    candidates = tf.concat([features[F.ITEM_ID][:, None], features[F.TRAIN_NEGATIVES]], 1)
    outputs = self.candidate_outputs(features, candidates, training=training)
    return outputs[:, 0], outputs[:, 1:]

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    features, labels = inputs
    target, negatives = self.training_logits(features, training=training)
    ctr_logit = target[:, 0]
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1])
    weight_a = tf.cast(tf.equal(features[F.DOMAIN], F.DOMAIN_A), tf.float32)
    # Keras losses reduce the last axis: give them [batch, 1] so each example keeps its weight.
    loss_a = self.task_a(labels=labels[:, None], predictions=ctr_logit[:, None],
                         sample_weight=weight_a, training=training)
    loss_b = self.task_b(labels=labels[:, None], predictions=ctr_logit[:, None],
                         sample_weight=1.0 - weight_a, training=training)
    per_example = loss_a + loss_b
    if negatives is not None:
      target_score = self.ranking_scores(
          target, self.item_prior(features, features[F.ITEM_ID][:, None])[:, 0])
      negative_scores = self.ranking_scores(
          negatives, self.item_prior(features, features[F.TRAIN_NEGATIVES]))
      # A relevance output learns every observed interaction; a lone CTR logit
      # only clicks (it must keep disliked items low).
      positive = tf.ones_like(labels) if self.has_relevance else labels
      # Log q and empty slots come with negatives drawn in the input pipeline (dasl_tf.negatives).
      ranking = losses_lib.sampled_ranking_loss(
          self.model_config.ranking_loss, target_score, negative_scores, positive,
          target_log_q=features.get(F.TRAIN_TARGET_LOGQ),
          negative_log_q=features.get(F.TRAIN_NEGATIVE_LOGQ),
          negative_mask=features.get(F.TRAIN_NEGATIVE_MASK))
      self.ranking_loss_metric.update_state(ranking)
      per_example += self.model_config.ranking_weight * ranking
    # Mean over the global batch, so replicas' gradients sum to the batch mean
    # under any tf.distribute strategy (and equal it without one).
    return tf.nn.compute_average_loss(per_example)

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
