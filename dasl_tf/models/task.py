"""The cross-domain task: what a two-headed model is trained by and ranks by.

As a ``tfrs.tasks`` task does for a TFRS model, :class:`CrossDomainTask` owns
everything about the objective, none of the scoring: the model
(:class:`~dasl_tf.models.base.CrossDomainRanker`) computes head outputs, the
task turns them into

* the CTR losses: one ``tfrs.tasks.Ranking`` per head (``task_a``,
  ``task_b``, ...), each on the examples of its domain, with its AUC and loss
  metrics (``auc_a``, ``loss_a``, ...);
* the item priors ``b_D`` (one ``[items_D, 1]`` embedding per domain), started
  at ``log(1 + clicks)`` by :meth:`CrossDomainTask.adapt` and trained by the
  ranking loss only;
* the top-n score ``r + b_D`` (``s + b_D`` without a relevance output ``r``;
  ``s`` the CTR logit), which :meth:`CrossDomainTask.call`'s ranking loss
  compares and the model's ``score_candidates`` ranks by;
* the sampled ranking loss over the batch's ``train_negatives``
  (:mod:`dasl_tf.losses`), with its metric ``ranking_loss``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from dasl_tf import features as F
from dasl_tf import losses as losses_lib


def _ranking_task(head: str) -> tfrs.tasks.Ranking:
  return tfrs.tasks.Ranking(
      loss=tf_keras.losses.BinaryCrossentropy(
          from_logits=True, reduction=tf_keras.losses.Reduction.NONE),
      metrics=[tf_keras.metrics.AUC(name=f"auc_{head}", from_logits=True)],
      loss_metrics=[tf_keras.metrics.Mean(name=f"loss_{head}")],
      name=f"ranking_{head}")


def count_clicks(dataset: tf.data.Dataset, num_items: Sequence[int]) -> List[tf.Tensor]:
  """Clicked examples per item of each domain over ``(features, labels)`` batches.

  Args:
    dataset: batches of ``(features, labels)``; a label > 0.5 is a click.
    num_items: the vocabulary size of each domain; ids outside it count at the OOV row.

  Returns:
    One float32 ``[num_items[D]]`` tensor per domain.
  """
  counts = [tf.zeros([size]) for size in num_items]
  examples = 0
  for features, labels in dataset:
    clicked = tf.cast(labels > 0.5, tf.float32)
    items = features[F.ITEM_ID]
    for d in range(len(num_items)):
      in_domain = tf.cast(tf.equal(features[F.DOMAIN], d), tf.float32)
      known = tf.where((items >= 0) & (items < num_items[d]), items, F.OOV_ID)
      counts[d] += tf.math.unsorted_segment_sum(clicked * in_domain, known, num_items[d])
    examples += int(tf.shape(labels)[0])
  logging.info("counted the clicks of %d training examples per item", examples)
  return counts


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class CrossDomainTask(tf_keras.layers.Layer):
  """The CTR losses, the ranking loss, the item priors and the top-n score of K >= 2 heads.

  Example:
    >>> task = CrossDomainTask((4, 4), ranking_loss="bce", ranking_weight=1.0,
    ...                        relevance=True)
    >>> task.item_priors[1].embeddings.assign([[0.0], [0.0], [0.5], [1.0]])
    <...>
    >>> outputs = tf.constant([[[0.3, 2.0], [0.1, 1.0]]])  # [batch, C, (CTR, relevance)]
    >>> prior = task.item_prior({F.DOMAIN: tf.constant([1])}, tf.constant([[2, 3]]))
    >>> task.top_n_score(outputs, prior).numpy()  # relevance + b_B
    array([[2.5, 2. ]], dtype=float32)

  Args:
    num_items: the vocabulary size of each domain, A, B, ... (the priors' rows).
    ranking_loss: :attr:`~dasl_tf.config.ModelConfig.ranking_loss`: ``"bce"``,
      ``"softmax"`` or ``"none"``.
    ranking_weight: the ranking loss's weight beside the CTR loss.
    relevance: whether the head outputs ``[..., 2]`` hold a relevance logit
      after the CTR logit (else ``[..., 1]``, the CTR logit alone).
    name: Keras name of the layer.
  """

  def __init__(self, num_items: Sequence[int], ranking_loss: str = "bce",
               ranking_weight: float = 1.0, relevance: bool = False, name: str = "task",
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_items = tuple(int(size) for size in num_items)
    self.ranking_loss = ranking_loss
    self.ranking_weight = float(ranking_weight)
    self.relevance = bool(relevance)
    for d in self.domains:  # task_a, task_b, ...: the checkpoints' names
      setattr(self, f"task_{F.domain_suffix(d)}", _ranking_task(F.domain_suffix(d)))
    self.ranking_loss_metric = tf_keras.metrics.Mean(name="ranking_loss")
    self.item_priors = [
        tf_keras.layers.Embedding(size, 1, embeddings_initializer="zeros",
                                  name=f"item_prior_{F.domain_suffix(d)}")
        for d, size in zip(self.domains, self.num_items)]
    for prior in self.item_priors:  # built now: a model's `call` never reads them
      prior.build((None,))

  @property
  def domains(self) -> Tuple[int, ...]:
    """The heads' domains, ``0 .. K-1``."""
    return tuple(range(len(self.num_items)))

  def ctr_task(self, domain: int) -> tfrs.tasks.Ranking:
    """The CTR task of head ``domain`` (``task_a``, ``task_b``, ...)."""
    return getattr(self, f"task_{F.domain_suffix(domain)}")

  def item_prior(self, features: Dict[str, tf.Tensor], items: tf.Tensor) -> tf.Tensor:
    """``b_D(i)`` ``[batch, C]`` of items ``[batch, C]`` in each example's domain D."""
    return F.domain_select(features[F.DOMAIN],
                           [self.domain_prior(items, d) for d in self.domains])

  def domain_prior(self, items: tf.Tensor, domain: int) -> tf.Tensor:
    """``b_D(i)`` of items (any shape) of domain ``domain``; unknown ids read the OOV row."""
    size = tf.cast(self.item_priors[domain].input_dim, items.dtype)
    known = tf.where((items >= 0) & (items < size), items, tf.cast(F.OOV_ID, items.dtype))
    return tf.squeeze(self.item_priors[domain](known), -1)

  def top_n_score(self, outputs: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """The top-n score from head outputs ``[..., U]`` and item priors ``[...]``.

    ``r + b`` with a relevance output ``r``, else ``s + b`` (``s`` the CTR
    logit): what the ranking loss compares and ``score_candidates`` ranks by.
    The CTR logit is not part of a relevance model's top-n score: it is
    trained on rated items only and ranks unseen items no better than chance.
    """
    return outputs[..., 1 if self.relevance else 0] + prior

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Starts the item priors at ``log(1 + clicks per item)`` over the training ``dataset``.

    Called once before training with the ranking objective, so that the
    top-n score starts from the popularity ranking and training refines it.
    """
    for prior, count in zip(self.item_priors, count_clicks(dataset, self.num_items)):
      prior.embeddings.assign(tf.math.log1p(count)[:, None])

  def call(self, features: Dict[str, tf.Tensor], labels: tf.Tensor, target: tf.Tensor,
           negatives: Optional[tf.Tensor] = None, training: bool = False) -> tf.Tensor:
    """The batch's loss: each head's CTR loss plus the weighted sampled ranking loss.

    Args:
      features: the batch's model inputs (``domain``, ``item_id``, and with
        ``negatives`` the ``train_negatives`` and their optional log q and mask).
      labels: the click labels ``[batch]`` (or ``[batch, 1]``).
      target: the target's head outputs ``[batch, U]``, by the example's own head.
      negatives: the ``train_negatives``' outputs ``[batch, k, U]``, or None
        (no ranking loss).
      training: whether the step trains.

    Returns:
      The scalar mean over the global batch, so that replicas' gradients sum
      to the batch mean under any ``tf.distribute`` strategy (and equal it
      without one).
    """
    ctr_logit = target[:, 0]
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1])
    # Keras losses reduce the last axis: give them [batch, 1] so each example keeps its weight.
    per_example = tf.add_n([self.ctr_task(d)(
        labels=labels[:, None], predictions=ctr_logit[:, None],
        sample_weight=tf.cast(tf.equal(features[F.DOMAIN], d), tf.float32), training=training)
                            for d in self.domains])
    if negatives is not None:
      target_score = self.top_n_score(
          target, self.item_prior(features, features[F.ITEM_ID][:, None])[:, 0])
      negative_scores = self.top_n_score(
          negatives, self.item_prior(features, features[F.TRAIN_NEGATIVES]))
      # A relevance output learns every observed interaction; a lone CTR logit
      # only clicks (it must keep disliked items low).
      positive = tf.ones_like(labels) if self.relevance else labels
      # Log q and empty slots come with negatives drawn in the input pipeline (dasl_tf.negatives).
      ranking = losses_lib.sampled_ranking_loss(
          self.ranking_loss, target_score, negative_scores, positive,
          target_log_q=features.get(F.TRAIN_TARGET_LOGQ),
          negative_log_q=features.get(F.TRAIN_NEGATIVE_LOGQ),
          negative_mask=features.get(F.TRAIN_NEGATIVE_MASK))
      self.ranking_loss_metric.update_state(ranking)
      per_example += self.ranking_weight * ranking
    return tf.nn.compute_average_loss(per_example)

  def get_config(self):
    config = super().get_config()
    config.update(num_items=self.num_items, ranking_loss=self.ranking_loss,
                  ranking_weight=self.ranking_weight, relevance=self.relevance)
    return config
