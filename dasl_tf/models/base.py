"""The ranking model of one head per domain every dasl_tf model (DASL, ablations, baselines) derives from.

A model has one scoring primitive, :meth:`CrossDomainRanker.head_outputs`:
the outputs ``[batch, C, U]`` of ``C`` candidate items per example under head
A (items of domain A), head B (items of domain B) and, in a model of K > 2
domains (``ModelConfig.num_items_more``), one head per further domain, the CTR logit first and,
for a model trained to rank (:attr:`~CrossDomainRanker.has_relevance`), a
relevance logit second. A subclass implements it, or for a CTR logit alone
:meth:`~CrossDomainRanker.head_logits`; a subclass whose heads can run alone
also overrides :meth:`~CrossDomainRanker.domain_outputs`, the one-head variant.
Everything about the objective lives beside the model in its
:class:`~dasl_tf.models.task.CrossDomainTask` (``model.task``), as a TFRS
model's task does: the CTR losses and metrics, the ranking loss, the item
priors ``b_D`` and the top-n score. The model then gives

* ``call(features)``: the CTR logits of the example's target item under every head,
* :meth:`~CrossDomainRanker.score_candidates`: each example's candidates
  ranked for top-n by the head of its own domain (HR@K evaluation, the
  ``recommend`` serving signature), the task's top-n score ``r + b_D`` (or
  ``s + b_D``); only that head runs when the batch is of one domain,
* :meth:`~CrossDomainRanker.predict_ctr`: named click probabilities for serving,
* ``compute_loss``: the task's loss on the head outputs of the target and of
  the batch's sampled ``train_negatives`` (each by the example's own head);
  regularisation losses of the layers (orthogonality, dual embedding,
  reconstruction) are added in :meth:`~CrossDomainRanker.train_step`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.models.task import CrossDomainTask


def _task_checkpoint_paths(num_domains: int) -> Tuple[str, ...]:
  """Where checkpoints written before the task existed keep the task's objects.

  The same objects are also tracked as attributes of the model, so old and
  new checkpoints restore through either path (an object is saved once):
  ``task_a``, ``task_b``, ... (one per domain), ``ranking_loss_metric``,
  ``item_priors``.
  """
  return (*(f"task_{F.domain_suffix(d)}" for d in range(num_domains)),
          "ranking_loss_metric", "item_priors")


class CrossDomainRanker(tfrs.Model):
  """Base class of cross-domain CTR models with one head per domain (K >= 2; two by default).

  The heads are the domains ``0 .. K-1`` (:attr:`domains`); every per-domain
  output is named by the domain's suffix (``logit_a``, ``ctr_c``).

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig`.
    name: Keras name of the model.

  Attributes:
    task: the :class:`~dasl_tf.models.task.CrossDomainTask` (losses, metrics,
      item priors, top-n score); its ``task_a``, ``task_b``, ... (one per
      domain), ``ranking_loss_metric`` and ``item_priors`` are reachable from the model
      under those names too.

  Raises:
    ValueError: a vocabulary is smaller than the reserved ids.
  """

  learns = True
  """Whether the model is trained by gradient steps (else ``adapt`` fits it in one pass)."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    fields = ("num_users", "num_items_a", "num_items_b",
              *(f"num_items_more[{k}]" for k in range(len(config.num_items_more))))
    for field, size in zip(fields, (config.num_users, *config.num_items)):
      if size < F.NUM_RESERVED_IDS:
        raise ValueError(
            f"{config.variant}: ModelConfig.{field}={size} is smaller than "
            f"the {F.NUM_RESERVED_IDS} reserved ids; take vocabulary sizes from schema.json")
    super().__init__(name=name or config.variant, **kwargs)
    self.model_config = config
    self.task = CrossDomainTask(
        config.num_items, ranking_loss=config.ranking_loss,
        ranking_weight=config.ranking_weight, relevance=self.has_relevance)
    for path in _task_checkpoint_paths(config.num_domains):  # checkpoint dependencies only: no second metric
      self._track_trackable(getattr(self.task, path), name=path)

  @property
  def domains(self) -> Tuple[int, ...]:
    """The model's domains, ``0 .. K-1``: one head each."""
    return tuple(range(self.model_config.num_domains))

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, ...]:
    """The CTR logits ``[batch, C]`` of a model without a relevance output, every head.

    A subclass that does not override :meth:`head_outputs` implements this.

    Args:
      features: a batch of model inputs (see :mod:`dasl_tf.features`).
      candidates: int64 ``[batch, C]`` item indices. Head D reads them in domain
        D's vocabulary.
      training: whether dropout and similar layers run in training mode.

    Returns:
      ``(logits_a, logits_b, ...)``, one float32 ``[batch, C]`` per domain.
    """
    raise NotImplementedError(
        f"{type(self).__name__} implements neither head_outputs nor head_logits")

  def head_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                   training: bool = False) -> Tuple[tf.Tensor, ...]:
    """Every output of every head, ``[batch, C, U]`` each: the CTR logit first.

    The scoring primitive (arguments as for :meth:`head_logits`). A model whose
    heads also have a relevance output (``U = 2``, see :attr:`has_relevance`)
    overrides this; the default is :meth:`head_logits` alone (``U = 1``).
    """
    return tuple(x[..., None] for x in self.head_logits(features, candidates, training))

  @property
  def has_relevance(self) -> bool:
    """Whether the heads' second output is a relevance logit trained by the ranking loss."""
    return False

  def call(self, features: Dict[str, tf.Tensor], training: bool = False
           ) -> Dict[str, tf.Tensor]:
    outputs = self.head_outputs(features, tf.expand_dims(features[F.ITEM_ID], 1),
                                training=training)
    return {f"logit_{F.domain_suffix(d)}": outputs[d][:, 0, 0] for d in self.domains}

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    """The outputs ``[batch, C, U]`` of the head of ``domain`` (0 = A, 1 = B, ...) alone.

    This default computes every head and keeps one; a subclass whose heads
    can run alone overrides it to compute only the one asked for.
    """
    return self.head_outputs(features, candidates, training=training)[domain]

  def candidate_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                        training: bool = False, domain: Optional[int] = None) -> tf.Tensor:
    """The outputs ``[batch, C, U]`` of candidates, each by its example's domain's head.

    When every example of the batch is of one domain (a ``recommend``
    request, usually) only that head runs (:meth:`domain_outputs`); a batch
    mixing domains runs every head and picks per example. A caller that
    knows the batch's one domain passes it as ``domain``: then only that
    head is computed and traced.
    """
    if domain is not None:
      return self.domain_outputs(features, candidates, domain, training=training)
    domain = features[F.DOMAIN]

    def every_head() -> tf.Tensor:
      return F.domain_select(domain, self.head_outputs(features, candidates, training=training))

    return tf.case(
        [(tf.reduce_all(tf.equal(domain, d)),
          lambda d=d: self.domain_outputs(features, candidates, d, training=training))
         for d in self.domains],
        default=every_head)

  def score_candidates(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                       training: bool = False, domain: Optional[int] = None) -> tf.Tensor:
    """Top-n scores ``[batch, C]`` of each example's candidates (higher = ranked first).

    The task's top-n score (:meth:`CrossDomainTask.top_n_score
    <dasl_tf.models.task.CrossDomainTask.top_n_score>`) of the outputs of the
    head of each example's domain (:meth:`candidate_outputs`). ``domain``
    (0 = A, 1 = B, ...), when given, says every example is of that domain: only
    its head is built into the graph.
    """
    outputs = self.candidate_outputs(features, candidates, training=training, domain=domain)
    prior = (self.task.item_prior(features, candidates) if domain is None
             else self.task.domain_prior(candidates, domain))
    return self.task.top_n_score(outputs, prior)

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Fits what one pass over the training ``dataset`` gives: here the task's item priors."""
    self.task.adapt(dataset)

  def predict_ctr(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Click probabilities: ``ctr_a``, ``ctr_b``, ... per head, ``ctr`` by the example's own domain."""
    logits = self(features, training=False)
    ctr = [tf.sigmoid(logits[f"logit_{F.domain_suffix(d)}"]) for d in self.domains]
    outputs = {f"ctr_{F.domain_suffix(d)}": ctr[d] for d in self.domains}
    outputs["ctr"] = F.domain_select(features[F.DOMAIN], ctr)
    return outputs

  def training_logits(self, features: Dict[str, tf.Tensor], training: bool = False
                      ) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Head outputs the loss reads, each by the head of the example's own domain.

    This default runs ``call`` (every head) for the target and
    :meth:`candidate_outputs` for the negatives; DASL overrides it with one
    pass that computes the user context once and each example's own head only.

    Returns:
      ``(target [B, U], negatives [B, k, U] or None when the batch has no
      ``train_negatives``)``.
    """
    if F.TRAIN_NEGATIVES not in features:
      logits = self(features, training=training)
      own = F.domain_select(features[F.DOMAIN], [logits[f"logit_{F.domain_suffix(d)}"]
                                                 for d in self.domains])
      return own[:, None], None
    candidates = tf.concat([features[F.ITEM_ID][:, None], features[F.TRAIN_NEGATIVES]], 1)
    outputs = self.candidate_outputs(features, candidates, training=training)
    return outputs[:, 0], outputs[:, 1:]

  def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
    """The task's loss (:meth:`CrossDomainTask.call`) on ``(features, labels)``."""
    features, labels = inputs
    target, negatives = self.training_logits(features, training=training)
    return self.task(features, labels, target, negatives, training=training)

  # The steps are plain TensorFlow: not converting them (nor the layers they call) with
  # AutoGraph saves most of the first epoch's graph building.
  @tf.autograph.experimental.do_not_convert
  def test_step(self, inputs):
    """tfrs's evaluation step (the loss and metrics of a batch), without AutoGraph."""
    return super().test_step(inputs)

  @tf.autograph.experimental.do_not_convert
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
