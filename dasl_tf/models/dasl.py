"""DASL (paper section 3) and its ablations DASL-DE, DASL-DA and Single-Domain (section 5.2)."""
from __future__ import annotations

import functools
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import cooccurrence
from dasl_tf import features as F
from dasl_tf import term_weights
from dasl_tf.catalogue import FullCatalogue
from dasl_tf.layers import autoencoder
from dasl_tf.layers.autoencoder import FeatureAutoencoder
from dasl_tf.layers.dual_attention import DualAttention, OWN, input_keys
from dasl_tf.layers.dual_embedding import DualEmbedding, MultiDomainEmbedding
from dasl_tf.layers.interaction import CandidateInteraction
from dasl_tf.layers.mlp import MLP, CheckpointedDropout
from dasl_tf.layers.sequence import SequenceEncoder, encode_histories
from dasl_tf.models import candidate_head
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.cooccurrence_score import CooccurrenceScore
from dasl_tf.models.recent_clicks import UNITS_PER_DAY, RecentClicks, window_length
from dasl_tf.models.registry import register


@functools.lru_cache(maxsize=None)
def _attention_keys(num_domains: int) -> Tuple[Dict[int, str], Dict[int, str], Dict[int, str]]:
  """Dual Attention's input keys ``(query, records, mask)`` per domain, of K domains."""
  return input_keys(F.domain_suffixes(num_domains))


class _UserContext(NamedTuple):
  """What the heads read besides the candidates, computed once per example.

  Attributes:
    parts: per domain ``D`` (only the domains computed), the parts of head D's
      candidate-independent input: ``u_D``, ``map(u_D')``, ``h_D``, ``h_D'``
      (with K > 2 domains: ``u_D``, ``M_{E->D} u_E`` and then ``h_D``, ``h_E``
      for every other domain E in order).
    records: the GRU outputs ``R_D`` of each domain ``[batch, T, units]``.
    masks: the real-record masks of the histories ``[batch, T]``, per domain.
  """
  parts: Dict[int, List[tf.Tensor]]
  records: Tuple[tf.Tensor, ...]
  masks: Tuple[tf.Tensor, ...]


class Ablation(NamedTuple):
  """The components a DASL variant is composed of (section 5.2).

  Attributes:
    dual_embedding: whether the model has a :class:`DualEmbedding` (DASL,
      DASL-DA); without one there is no ``map(u_D')`` and no eq. (1)-(2).
    attention: the :class:`DualAttention` mode: ``"joint"`` (eq. 6-7; DASL,
      DASL-DE), ``"separate"`` (one softmax per domain; DASL-DA) or ``"own"``
      (the head's own domain only; Single-Domain, whose heads then read
      nothing of the other domain).
  """
  dual_embedding: bool
  attention: str


def ablation(config: config_lib.ModelConfig) -> Ablation:
  """The components of ``config.variant``, from its row of ``config.DASL_VARIANTS``.

  The only place the model reads the variant: :class:`DASL` is built from
  what this returns.

  Raises:
    ValueError: the variant is not a DASL variant.
  """
  if config.variant not in config_lib.VARIANTS:
    raise ValueError(f"DASL: variant must be one of {config_lib.VARIANTS}, "
                     f"got {config.variant!r}")
  return Ablation(dual_embedding=config.dual_embedding, attention=config.attention_mode)


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
@register(*config_lib.VARIANTS)
class DASL(CrossDomainRanker):
  """Dual Attentive Sequential Learning: one head per domain (two, or K > 2), trained together.

  For each example the user context is computed once:

  * ``u_A``, ``u_B``: the user's latent embedding in each domain, each from its
    own :class:`FeatureAutoencoder` over the user's id and side features (3.1);
  * ``X u_A`` and ``X^T u_B`` from :class:`DualEmbedding` with its losses
    eq. (1)-(2) over overlap users (both histories non-empty) and the
    orthogonality penalty (3.2);
  * per domain D, the item embeddings of the history (the domain's item
    autoencoder on ids), a :class:`SequenceEncoder` GRU over them (3.3) giving
    per-step outputs ``R_D`` and final state ``h_D``.

  Then for C candidates per example, each head D (own domain D, other domain
  D') embeds the candidates with domain D's item autoencoder ``c_D``, attends
  with :class:`DualAttention` (eq. 6-7, query ``c_D`` over ``(R_D ; R_D')``)
  and scores

    logit_D = MLP_D([u_D ; map(u_D') ; h_D ; h_D' ; Att_D ; c_D])

  with ``map(u_B) = X^T u_B`` for head A and ``map(u_A) = X u_A`` for head B.
  With ``config.candidate_interactions`` (the default) the MLP input also holds
  the products ``c_D ⊙ (x P_x)`` of the candidate with each of ``Att_D`` and
  the context parts ``x`` above (:class:`CandidateInteraction`).
  Ablations (``config.variant``) are compositions of the components that
  :func:`ablation` reads from the variant table:

  * ``dasl_de``: no Dual Embedding (no ``map(u_D')``, no dual losses);
  * ``dasl_da``: attention per domain, two softmaxes, outputs concatenated;
  * ``single_domain``: neither, and attention over the own domain only, so each
    head sees its own domain only (no ``h_D'``, no records of D').

  With ``config.cooccurrence_score`` (and a ranking loss), each head's
  relevance output also gets the item co-occurrence term of
  :class:`~dasl_tf.models.cooccurrence_score.CooccurrenceScore` (own-domain
  history; the other domain's too, except for Single-Domain), its tables
  counted from the training split by :meth:`adapt`. With
  ``config.recency_score`` (a ranking loss and data with real times), it also
  gets ``w_D · log(1 + r(c, t))``, the clicks of c in the training split in the
  ``recent_window_days`` before the example's time
  (:class:`~dasl_tf.models.recent_clicks.RecentClicks`; serving requests,
  which carry no time, are counted at the end of the training data).

  With ``config.other_domain_dropout`` > 0, training hides the other domain's
  history from that fraction of the examples (their head sees a user with no
  record there); evaluation and serving hide nothing.

  With K > 2 domains (``config.num_items_more``) there is one head, user and
  item autoencoder and GRU per domain; the attention runs over all K
  domains' records (the own domain's only for Single-Domain); Dual Embedding
  is a :class:`~dasl_tf.layers.MultiDomainEmbedding` (eq. (1)-(2) over every
  pair of domains, its users those with both histories non-empty), and head
  D reads ``M_{E->D} u_E`` and ``h_E`` of every other domain E in place of
  ``map(u_D')`` and ``h_D'``. With K = 2 it is :class:`DualEmbedding`.

  Losses: the task's (:class:`~dasl_tf.models.task.CrossDomainTask`: each
  head's CTR loss on the examples of its domain, and the ranking loss) plus,
  through ``self.losses``, the dual-embedding, orthogonality, reconstruction
  and L2 terms with the weights of the config.

  Examples carry side features of the target item only (``item_num``,
  ``item_cat``), not of history items or sampled candidates, so the item
  autoencoders encode ids (``encode_side_features=False``) and the target's side
  features are their reconstruction targets in ``call`` (weighted to the
  target's domain): every item, target or candidate, gets the same latent and
  :meth:`score_candidates` ranks a positive and its negatives alike.

  Args:
    config: the model's :class:`~dasl_tf.config.ModelConfig`.
    name: Keras name of the model (defaults to the variant).

  Raises:
    ValueError: a vocabulary is smaller than the reserved ids or the variant is
      not a DASL variant.
  """

  def __init__(self, config: config_lib.ModelConfig, name: Optional[str] = None, **kwargs):
    components = ablation(config)
    super().__init__(config, name=name, **kwargs)
    self.single_domain = components.attention == OWN
    item_vocab = config.num_items
    names = F.domain_suffixes(config.num_domains)
    self.user_autoencoders = [
        FeatureAutoencoder(
            config.num_users, config.embedding_dim, config.user_num_dim,
            config.user_cat_vocab_sizes, config.autoencoder_units,
            reconstruction_weight=config.reconstruction_weight, l2=config.l2,
            oov_id=F.OOV_ID, name=f"user_autoencoder_{names[d]}") for d in self.domains]
    self.item_autoencoders = [
        FeatureAutoencoder(
            item_vocab[d], config.embedding_dim, config.item_num_dim,
            config.item_cat_vocab_sizes, config.autoencoder_units,
            reconstruction_weight=config.reconstruction_weight, l2=config.l2,
            oov_id=F.OOV_ID, encode_side_features=False,
            name=f"item_autoencoder_{names[d]}") for d in self.domains]
    self.sequence_encoders = [
        SequenceEncoder(config.gru_units, unroll=config.unroll_gru,
                        name=f"sequence_encoder_{names[d]}") for d in self.domains]
    self.dual_embedding = None
    if components.dual_embedding and config.num_domains == 2:  # the paper's X: its checkpoint keys
      self.dual_embedding = DualEmbedding(
          config.dual_embedding_weight, config.orthogonality_weight, name="dual_embedding")
    elif components.dual_embedding:
      self.dual_embedding = MultiDomainEmbedding(
          domain_names=names, dual_weight=config.dual_embedding_weight,
          orthogonality_weight=config.orthogonality_weight, name="dual_embedding")
    self.dual_attention = DualAttention(config.attention_dim, mode=components.attention,
                                        domain_names=names, name="dual_attention")
    self.interactions = [
        CandidateInteraction(l2=config.l2, name=f"interaction_{names[d]}") for d in self.domains
    ] if config.candidate_interactions else None
    self.other_domain_dropout = None  # Single-Domain reads no other domain: nothing to hide
    if config.other_domain_dropout != 0 and not self.single_domain:
      # built now, so that checkpoints always hold its random state
      self.other_domain_dropout = CheckpointedDropout(
          config.other_domain_dropout, name="other_domain_dropout")
      self.other_domain_dropout.build((None,))
    self.heads = [
        MLP(config.hidden_units, 2 if self.has_relevance else 1, dropout=config.dropout,
            l2=config.l2, name=f"head_{names[d]}") for d in self.domains]
    self.cooccurrence = CooccurrenceScore(
        item_vocab, config.knn_neighbors, cross_domain=not self.single_domain
    ) if config.cooccurrence_score and self.has_relevance else None
    self.recent_clicks = None
    if (config.recency_score and self.has_relevance
        and config.timestamp_unit in UNITS_PER_DAY):
      self.recent_clicks = RecentClicks(item_vocab, window_length(config))
      self.recency_weights = self.add_weight(name="recency_weights", shape=(config.num_domains,),
                                             initializer="ones", trainable=True)

  def adapt(self, dataset: tf.data.Dataset) -> None:
    """Starts the item priors at the click counts and counts the co-occurrence tables."""
    super().adapt(dataset)
    variant = self.model_config.variant
    if self.cooccurrence is not None:
      self.cooccurrence.fit(cooccurrence.example_features(
          dataset, (F.ITEM_ID, F.DOMAIN, *F.history_keys(self.model_config.num_domains)), variant,
          clicked_only=False))
    if self.recent_clicks is not None:
      if F.TIMESTAMP not in dataset.element_spec[0]:
        logging.warning("%s: the training data has no %r (prepared by an earlier release): "
                        "the recency term stays 0", variant, F.TIMESTAMP)
        return
      self.recent_clicks.fit(cooccurrence.example_features(
          dataset, (F.ITEM_ID, F.DOMAIN, F.TIMESTAMP), variant), variant)

  @property
  def has_relevance(self) -> bool:
    """Each head has a second, relevance output when the model is trained to rank."""
    return self.model_config.ranking_loss != config_lib.NO_RANKING_LOSS

  def call(self, features: Dict[str, tf.Tensor], training: bool = False
           ) -> Dict[str, tf.Tensor]:
    """Logits of the target item under every head (plus the item reconstruction loss).

    The CTR output only: the top-n terms, which add to the relevance output, are not computed.
    """
    target = tf.expand_dims(features[F.ITEM_ID], 1)
    outputs = self._outputs(features, target, self._target_side_features(features), training,
                            top_n_terms=False)
    return {f"logit_{F.domain_suffix(d)}": outputs[d][:, 0, 0] for d in self.domains}

  def head_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                   training: bool = False) -> Tuple[tf.Tensor, ...]:
    """Outputs ``[batch, C, U]`` of candidates under every head (CTR, then relevance)."""
    return tuple(self._outputs(features, candidates, (None,) * len(self.domains), training))

  def domain_outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                     domain: int, training: bool = False) -> tf.Tensor:
    """Outputs ``[batch, C, U]`` of candidates under one head; the others are not computed."""
    return self._outputs(features, candidates, (None,) * len(self.domains), training,
                         heads=(domain,))[0]

  def attention_weights(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """What Dual Attention looked at for each example's target item (for reports).

    Returns:
      ``{"a": [batch, 2T], "b": [batch, 2T]}``: head A's and head B's weights
      over the example's records, domain A's T history items then domain B's
      (padding 0), with the target item as each head's query; see
      :meth:`DualAttention.record_weights` for each variant's normalisation.
      With K > 2 domains, one ``[batch, K T]`` entry per head, over the K
      domains' records in domain order.
    """
    query_keys, record_keys, mask_keys = _attention_keys(len(self.domains))
    context = self._user_context(features, training=False)
    target = tf.expand_dims(features[F.ITEM_ID], 1)
    side_features = self._target_side_features(features)
    queries = [self._embed_candidates(d, target, side_features[d], training=False)
               for d in self.domains]
    inputs = {}
    for d in self.domains:
      inputs.update({query_keys[d]: queries[d], record_keys[d]: context.records[d],
                     mask_keys[d]: context.masks[d]})
    weights = self.dual_attention.record_weights(inputs)
    return {F.domain_suffix(d): weights[d][:, 0] for d in self.domains}

  def training_logits(self, features: Dict[str, tf.Tensor], training: bool = False
                      ) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """The target's and the sampled negatives' outputs, by the example's own head only.

    The examples of each domain are gathered and scored by their head alone,
    target and ``train_negatives`` together, then stitched back into batch
    order. The candidate-independent user context is computed once for the
    whole batch (Dual Embedding's losses see every overlap user), except for
    ``single_domain``, where each head's examples get their own context so
    that nothing of one domain (reconstruction loss, batch statistics) reaches
    the other head.
    """
    negatives = features.get(F.TRAIN_NEGATIVES)
    if training and self.other_domain_dropout is not None:
      features = self._hide_other_domains(features)
    indices = [tf.where(tf.equal(features[F.DOMAIN], d))[:, 0] for d in self.domains]
    side_features = self._target_side_features(features)
    context = None if self.single_domain else self._user_context(features, training)
    per_head = []
    read_by_terms = F.history_keys(len(self.domains)) + (F.TIMESTAMP,)
    for d in self.domains:
      take = lambda x, d=d: tf.gather(x, indices[d])  # pylint: disable=cell-var-from-loop
      if self.single_domain:
        head_context = self._user_context(tf.nest.map_structure(take, features), training,
                                          heads=(d,))
      else:
        head_context = tf.nest.map_structure(take, context)
      target_side = side_features[d] and tf.nest.map_structure(take, side_features[d])
      candidate_ids = tf.expand_dims(take(features[F.ITEM_ID]), 1)
      candidates = self._embed_candidates(d, candidate_ids, target_side, training)
      if negatives is not None:
        candidate_ids = tf.concat([candidate_ids, take(negatives)], axis=1)
        candidates = tf.concat(
            [candidates, self._embed_candidates(d, take(negatives), None, training)], axis=1)
      outputs = self._head_outputs(d, head_context, candidates, training)
      per_head.append(self._with_top_n_terms(
          outputs, {name: take(features[name]) for name in read_by_terms
                    if name in features}, candidate_ids, d,
          leave_one_out=training))
    outputs = tf.dynamic_stitch([tf.cast(i, tf.int32) for i in indices], per_head)
    return outputs[:, 0], (outputs[:, 1:] if negatives is not None else None)

  def _hide_other_domains(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Empties the other domains' histories of a random ``other_domain_dropout`` share of examples."""
    domain = features[F.DOMAIN]
    hidden = tf.equal(
        self.other_domain_dropout(tf.ones_like(domain, tf.float32), training=True), 0.0)
    features = dict(features)
    for d, name in enumerate(F.history_keys(len(self.domains))):
      hide = hidden & tf.not_equal(domain, d)
      history = features[name]
      features[name] = tf.where(hide[:, None], tf.constant(F.PAD_ID, history.dtype),
                                         history)
    return features

  def _outputs(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
               candidate_side_features: Tuple[Optional[Dict[str, tf.Tensor]], ...],
               training: bool, heads: Optional[Sequence[int]] = None,
               top_n_terms: bool = True) -> List[tf.Tensor]:
    """Outputs ``[batch, C, U]`` of the candidates under each head of ``heads``, in order.

    With ``top_n_terms`` false the relevance output lacks the co-occurrence and
    recency terms (for callers that read the CTR output only). ``heads``
    defaults to every domain.
    """
    heads = self.domains if heads is None else heads
    context = self._user_context(features, training, heads)
    outputs = []
    for d in heads:
      head = self._head_outputs(
          d, context, self._embed_candidates(d, candidates, candidate_side_features[d], training),
          training)
      outputs.append(self._with_top_n_terms(head, features, candidates, d) if top_n_terms
                     else head)
    return outputs

  def _with_top_n_terms(self, outputs: tf.Tensor, features: Dict[str, tf.Tensor],
                        candidates: tf.Tensor, domain: int,
                        leave_one_out: bool = False) -> tf.Tensor:
    """Head outputs ``[B, C, 2]``, the co-occurrence and recency terms added to the relevance."""
    weights = self._term_weights(domain)
    if not weights:
      return outputs
    term = tf.add_n([weight * part for weight, part in zip(
        weights.values(), self._term_parts(features, candidates, domain, leave_one_out))])
    return tf.stack([outputs[..., 0], outputs[..., 1] + term], axis=-1)

  def _term_weights(self, domain: int) -> Dict[str, tf.Tensor]:
    """Head ``domain``'s weights of the terms beside the relevance, by name, in term order."""
    weights = {}
    if self.cooccurrence is not None:
      for k, name in enumerate(self.cooccurrence.source_names(domain)):
        weights[f"cooccurrence_{name}"] = self.cooccurrence.weights_per_source[domain, k]
    if self.recent_clicks is not None:
      weights["recency"] = self.recency_weights[domain]
    return weights

  def _term_parts(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor, domain: int,
                  leave_one_out: bool = False) -> List[tf.Tensor]:
    """The unweighted terms ``[B, C]`` of head ``domain``, in the order of :meth:`_term_weights`."""
    parts = []
    if self.cooccurrence is not None:
      parts += self.cooccurrence.source_scores(features, candidates, domain, leave_one_out)
    if self.recent_clicks is not None:
      recent, _ = self.recent_clicks.counts(candidates, domain, features.get(F.TIMESTAMP))
      parts.append(tf.math.log1p(tf.cast(recent, tf.float32)))
    return parts

  def top_n_parts(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor, domain: int
                  ) -> Dict[str, tf.Tensor]:
    """The unweighted parts ``[B, C]`` of head ``domain``'s top-n score, by name.

    ``score_candidates(..., domain=domain)`` is ``Σ_n top_n_weights(domain)[n] ·
    part_n`` over these parts: ``relevance`` (the head's relevance output, or
    its CTR logit without one), ``prior`` (``b_D``), then
    ``cooccurrence_<head>_from_<source>`` and ``recency`` where the model has
    those terms.
    """
    context = self._user_context(features, training=False, heads=(domain,))
    outputs = self._head_outputs(
        domain, context, self._embed_candidates(domain, candidates, None, training=False),
        training=False)
    parts = {"relevance": outputs[..., 1 if self.has_relevance else 0],
             "prior": self.task.domain_prior(candidates, domain)}
    parts.update(zip(self._term_weights(domain),
                     self._term_parts(features, candidates, domain)))
    return parts

  def top_n_weights(self, domain: int) -> Dict[str, float]:
    """The weight of each of :meth:`top_n_parts` in head ``domain``'s score (relevance, prior: 1)."""
    return {"relevance": 1.0, "prior": 1.0,
            **{name: float(weight.numpy()) for name, weight in self._term_weights(domain).items()}}

  def select_on_validation(self, dataset: tf.data.Dataset, catalogue: FullCatalogue,
                           train: config_lib.TrainConfig) -> Dict[str, object]:
    """Chooses each head's top-n part weights on the validation split (:mod:`dasl_tf.term_weights`).

    With ``validation_term_weights`` off, or ``train.full_catalogue_positives``
    0, the trained weights stay and the result is empty.

    Args:
      dataset: the validation split's ``(features, labels)`` batches.
      catalogue: what users touched in the training split.
      train: the run's config: the sample's size (``full_catalogue_positives``) and seed.
    """
    if not self.model_config.validation_term_weights or not train.full_catalogue_positives:
      return {}
    return term_weights.select_term_weights(self, dataset, catalogue,
                                            train.full_catalogue_positives, train.seed)

  def set_top_n_weights(self, domain: int, weights: Dict[str, float]) -> None:
    """Makes head ``domain`` rank by ``Σ_n weights[n] · part_n`` (the parts of :meth:`top_n_parts`).

    A ranking does not change when every weight is multiplied by the same
    positive number, so the weights are divided by ``weights["relevance"]``
    and written into the model's own variables: the prior ``b_D`` is scaled
    by ``weights["prior"]`` and the term weights are replaced. The CTR output
    does not change.

    Raises:
      ValueError: the relevance weight is not positive, or ``weights`` names
        other parts than the head has.
    """
    expected = {"relevance", "prior", *self._term_weights(domain)}
    if set(weights) != expected:
      raise ValueError(f"{self.model_config.variant} head {F.domain_suffix(domain)} has the "
                       f"top-n parts {sorted(expected)}, not {sorted(weights)}")
    scale = float(weights["relevance"])
    if not scale > 0:
      raise ValueError(f"the relevance weight must be positive, got {scale}")
    # Whole-variable assignments: they also update every replica's copy under tf.distribute.
    prior = self.task.item_priors[domain].embeddings
    prior.assign(prior * (weights["prior"] / scale))
    if self.cooccurrence is not None:
      source_weights = self.cooccurrence.weights_per_source.numpy()
      source_weights[domain] = [weights[f"cooccurrence_{name}"] / scale
                                for name in self.cooccurrence.source_names(domain)]
      self.cooccurrence.weights_per_source.assign(source_weights)
    if self.recent_clicks is not None:
      recency = self.recency_weights.numpy()
      recency[domain] = weights["recency"] / scale
      self.recency_weights.assign(recency)

  def _embed_candidates(self, domain: int, candidates: tf.Tensor,
                        side_features: Optional[Dict[str, tf.Tensor]],
                        training: bool) -> tf.Tensor:
    """``[batch, C, d]`` latents of candidates by the item autoencoder of ``domain``."""
    inputs = {autoencoder.ID: candidates}
    inputs.update(side_features or {})
    return self.item_autoencoders[domain](inputs, training=training)

  def _head_outputs(self, domain: int, context: "_UserContext", candidates: tf.Tensor,
                    training: bool) -> tf.Tensor:
    """Head ``domain``'s outputs ``[batch, C, U]`` of embedded candidates ``[batch, C, d]``."""
    query_keys, record_keys, mask_keys = _attention_keys(len(self.domains))
    attention_inputs = {query_keys[domain]: candidates}
    for d in self.domains:
      attention_inputs.update({record_keys[d]: context.records[d], mask_keys[d]: context.masks[d]})
    attended, = self.dual_attention(attention_inputs, heads=[domain])
    return candidate_head.head_outputs(
        self.heads[domain], self.interactions and self.interactions[domain],
        context.parts[domain], attended, candidates, training=training)

  def _user_context(self, features: Dict[str, tf.Tensor], training: bool,
                    heads: Optional[Sequence[int]] = None) -> "_UserContext":
    """The candidate-independent inputs of the heads in ``heads`` (default: every domain).

    Single-Domain computes the user autoencoder of those heads' domains only,
    so a head never trains the other domain's user autoencoder.
    """
    heads = self.domains if heads is None else heads
    masks, records, states = encode_histories(
        [features[name] for name in F.history_keys(len(self.domains))], self.item_autoencoders,
        self.sequence_encoders, F.PAD_ID, training)
    user_inputs = {autoencoder.ID: features[F.USER_ID]}
    if F.USER_NUM in features:
      user_inputs[autoencoder.NUMERIC] = features[F.USER_NUM]
    if F.USER_CAT in features:
      user_inputs[autoencoder.CATEGORICAL] = features[F.USER_CAT]
    user_domains = heads if self.single_domain else self.domains
    users = {d: self.user_autoencoders[d](user_inputs, training=training) for d in user_domains}
    parts = {d: [users[d]] for d in user_domains}
    if isinstance(self.dual_embedding, DualEmbedding):
      overlap = tf.reduce_any(masks[0], axis=1) & tf.reduce_any(masks[1], axis=1)
      a_to_b, b_to_a = self.dual_embedding((users[0], users[1], overlap))
      parts[0].append(b_to_a)  # map(u_D'): the other domains' users in D's space
      parts[1].append(a_to_b)
    elif self.dual_embedding is not None:
      # present[:, d]: a non-empty history of domain d; a pair's users are present in both
      present = tf.stack([tf.reduce_any(mask, axis=1) for mask in masks], axis=1)
      mapped = self.dual_embedding(([users[d] for d in self.domains], present))
      for d in self.domains:  # M_{E->D} u_E: every other domain's user in D's space
        parts[d].extend(mapped[:, e, d] for e in self.domains if e != d)
    for d in user_domains:
      parts[d].append(states[d])
      if not self.single_domain:
        parts[d].extend(states[e] for e in self.domains if e != d)
    return _UserContext(parts=parts, records=tuple(records), masks=tuple(masks))

  def _target_side_features(self, features: Dict[str, tf.Tensor]
                            ) -> Tuple[Optional[Dict[str, tf.Tensor]], ...]:
    """Per domain, the target's side features ``[batch, 1, ...]`` weighted to its own domain."""
    side = {}
    if F.ITEM_NUM in features:
      side[autoencoder.NUMERIC] = tf.expand_dims(features[F.ITEM_NUM], 1)
    if F.ITEM_CAT in features:
      side[autoencoder.CATEGORICAL] = tf.expand_dims(features[F.ITEM_CAT], 1)
    if not side:
      return (None,) * len(self.domains)
    per_domain = []
    for d in self.domains:
      in_domain = tf.cast(tf.equal(features[F.DOMAIN], d), tf.float32)
      per_domain.append(dict(side, **{autoencoder.SAMPLE_WEIGHT: in_domain[:, None]}))
    return tuple(per_domain)
