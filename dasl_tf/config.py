"""Typed configuration for the model, the input pipeline and training.

Every run writes its resolved :class:`ExperimentConfig` as JSON next to its
checkpoints, so a run can be reproduced and a model rebuilt from its directory.
Configs are plain data: they are read with ``json`` only (no pickle, no eval).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar

from dasl_tf import errors
from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf import publish

T = TypeVar("T")

# The DASL variants, the one table of what each is built from: (Dual Embedding, the
# attention's mode: "joint" = Dual Attention, eq. (6)-(7), one softmax over both domains'
# records; "separate" = one softmax per domain's records; "own" = the head's own domain only).
DASL_VARIANTS = {
    "dasl": (True, "joint"),
    "dasl_de": (False, "joint"),
    "dasl_da": (True, "separate"),
    "single_domain": (False, "own"),
}
VARIANTS = tuple(DASL_VARIANTS)
# The variants that train on K >= 2 domains; the others (the paper's baselines) on two.
K_DOMAIN_VARIANTS = VARIANTS + ("popularity",)
RANKING_LOSSES = ("bce", "softmax")
# TrainConfig.negative_sampling: the stored draws of dasl-prepare, or fresh draws every epoch.
NEGATIVE_SAMPLINGS = ("stored", "uniform", "popularity")
# ModelConfig.ranking_loss of a model trained for CTR alone (no sampled negatives).
NO_RANKING_LOSS = "none"
# The units of the examples' ``timestamp`` feature (``ModelConfig.timestamp_unit``): real
# times, or the order of the input's lines (data without times).
TIMESTAMP_UNITS = ("seconds", "milliseconds", "pseudo_time")
# TrainConfig.strategy: the tf.distribute strategies of :mod:`dasl_tf.distribute`.
STRATEGIES = ("default", "mirrored", "multi_worker")
# At most this many domains, suffixed a .. z (dasl_tf.features.MAX_DOMAINS).
MAX_DOMAINS = 26


class ConfigError(errors.DaslError, ValueError):
  """A configuration value or file is invalid."""


def _from_dict(cls: Type[T], values: Dict[str, Any], where: str, base: Optional[T] = None) -> T:
  """Builds dataclass ``cls`` from ``values``, rejecting unknown keys and coercing tuples.

  Fields ``values`` omits keep those of ``base`` (default: the field defaults).
  """
  if not isinstance(values, dict):
    raise ConfigError(f"{where}: expected a JSON object, got {type(values).__name__}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
  kwargs = {}
  for name, value in values.items():
    field_type = fields[name].type
    sub = _NESTED.get(field_type) if isinstance(field_type, str) else None
    if sub is not None:
      kwargs[name] = _from_dict(sub, value, f"{where}.{name}", getattr(base, name, None))
    elif isinstance(value, list):
      kwargs[name] = tuple(value)
    else:
      kwargs[name] = value
  return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _type_error(config, field: dataclasses.Field) -> str:
  """Why the value of ``field`` does not fit its annotation ("" when it does)."""
  value = getattr(config, field.name)
  type_name = field.type
  if type_name in _NESTED:
    return "" if isinstance(value, _NESTED[type_name]) else f"expected a {type_name}"
  if type_name.startswith("Tuple["):
    element = type_name[len("Tuple["):].split(",")[0]
    if isinstance(value, (tuple, list)) and all(_fits(v, element) for v in value):
      return ""
    return f"expected a list of {element}"
  if not _fits(value, type_name):
    return f"expected {type_name}"
  if type_name == "float" and not math.isfinite(value):
    return "expected a finite number"
  return ""


# Range rules of the config fields: (what the field must be, the test). A tuple field's
# rule applies to each of its elements.
_Rule = Tuple[str, Callable[[Any], bool]]
_POSITIVE: _Rule = (">= 1", lambda v: v >= 1)
_NON_NEGATIVE: _Rule = (">= 0", lambda v: v >= 0)
_ABOVE_ZERO: _Rule = ("> 0", lambda v: v > 0)
_RATE: _Rule = ("in [0, 1)", lambda v: 0 <= v < 1)


def _one_of(choices: Tuple[str, ...]) -> _Rule:
  return (f"one of {choices}", lambda v: v in choices)


def _range_error(config, rules: Mapping[str, _Rule]) -> str:
  """The first field of ``config`` outside its rule, as a message ("" when all fit)."""
  for name, (expected, fits) in rules.items():
    value = getattr(config, name)
    values = value if isinstance(value, (tuple, list)) else (value,)
    if not all(fits(v) for v in values):
      subject = "every element" if isinstance(value, (tuple, list)) else "it"
      return f"{type(config).__name__}.{name}={value!r}: {subject} must be {expected}"
  return ""


def monitor_mode(monitor: str) -> str:
  """``max`` for AUC-like metrics, ``min`` for losses, of a ``val_*`` metric name.

  Raises:
    ConfigError: ``monitor`` is neither an AUC nor a loss.
  """
  name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
  if name.startswith("auc"):
    return "max"
  if name.startswith("loss") or name.endswith("_loss"):
    return "min"
  raise ConfigError(
      f"TrainConfig.monitor={monitor!r}: expected an AUC or a loss, such as val_auc (mean of "
      "both heads), val_auc_a, val_auc_b, val_loss, val_loss_a, val_loss_b or "
      "val_ranking_loss; the validation split is watched, never the test split")


def _fits(value, type_name: str) -> bool:
  if type_name == "bool":
    return isinstance(value, bool)
  if isinstance(value, bool):
    return False
  kinds = {"int": numbers.Integral, "float": numbers.Real, "str": str}
  return isinstance(value, kinds[type_name])


# Fields left out of config JSON at these values (those of two domains).
_TWO_DOMAIN_DEFAULTS = {"num_items_more": ()}


def _without_two_domain_defaults(values: Dict[str, Any]) -> Dict[str, Any]:
  return {key: _without_two_domain_defaults(item) if isinstance(item, dict) else item
          for key, item in values.items()
          if not (key in _TWO_DOMAIN_DEFAULTS and item == _TWO_DOMAIN_DEFAULTS[key])}


class _JsonMixin:
  """JSON round-trip for the config dataclasses, every field checked on construction.

  Types first, then the ranges of ``_RANGES`` (field -> rule), then the
  cross-field rules of ``_check``: an out-of-range config cannot be built, so
  nothing is written for it.
  """
  _RANGES: ClassVar[Mapping[str, _Rule]] = {}

  def __post_init__(self):
    for field in dataclasses.fields(self):
      problem = _type_error(self, field)
      if problem:
        value = getattr(self, field.name)
        raise ConfigError(f"{type(self).__name__}.{field.name}: {problem}, got {value!r} "
                          f"({type(value).__name__})")
    problem = _range_error(self, self._RANGES)
    if problem:
      raise ConfigError(problem)
    self._check()

  def _check(self) -> None:
    """Rules that relate fields (raises ConfigError); none by default."""

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    """The config in the package's JSON layout (:func:`dasl_tf.json_io.dumps`).

    Fields of K-domain models at their two-domain values are left out
    (:data:`_TWO_DOMAIN_DEFAULTS`), so that a two-domain config is written as
    before K-domain models and older files load.
    """
    return json_io.dumps(_without_two_domain_defaults(self.to_dict()))

  @classmethod
  def from_dict(cls, values: Dict[str, Any], base=None):
    """The config of ``values``; keys they omit keep ``base``'s values (default: defaults)."""
    return _from_dict(cls, values, cls.__name__, base)

  @classmethod
  def from_json(cls, text: str, base=None):
    """Parses JSON strictly (no repeated key, no NaN: :mod:`dasl_tf.json_io`); see from_dict."""
    return cls.from_dict(json_io.loads(text, cls.__name__, ConfigError), base)

  @classmethod
  def load(cls, path: str, base=None):
    """Reads a config from a JSON file, naming the file in any error; see :meth:`from_dict`."""
    try:
      with filesystems.open_file(path) as f:
        return cls.from_json(f.read(), base)
    except FileNotFoundError as e:
      raise ConfigError(f"config file not found: {path}") from e
    except ConfigError as e:
      raise ConfigError(f"{path}: {e}") from e

  def save(self, path: str) -> None:
    """Writes the config as JSON to ``path`` (local or remote), published whole."""
    publish.write_file(path, self.to_json())

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_JsonMixin):
  """Hyper-parameters of the DASL model and its ablations.

  Vocabulary sizes count the two reserved ids (0 = padding, 1 = out-of-vocabulary).
  They normally come from the ``schema.json`` that ``dasl-prepare`` writes
  (see :meth:`dasl_tf.features.DatasetSchema.model_config`).

  Attributes:
    variant: "dasl", "dasl_de" (no Dual Embedding), "dasl_da" (attention per
      domain) or "single_domain" (neither) (:data:`DASL_VARIANTS`), or a
      baseline name (``popularity``, ``din``, ...).
    num_users: size of the user vocabulary (shared by both domains).
    num_items_a: size of domain A's item vocabulary.
    num_items_b: size of domain B's item vocabulary.
    num_items_more: sizes of the item vocabularies of domains C, D, ... of a
      model of K > 2 domains (:attr:`num_items` holds all K); only the
      variants of :data:`K_DOMAIN_VARIANTS` take more than two domains.
    history_length: T, the number of past items per domain in each example.
    user_num_dim: number of numeric user side features.
    user_cat_vocab_sizes: vocabulary size of each categorical user feature.
    item_num_dim: number of numeric item side features.
    item_cat_vocab_sizes: vocabulary size of each categorical item feature.
    embedding_dim: d, the size of user and item embeddings.
    gru_units: hidden size of each domain's GRU.
    attention_dim: d_k, the size of queries and keys in Dual Attention.
    hidden_units: layer sizes of each head's MLP.
    autoencoder_units: hidden layer sizes of the feature autoencoders' encoder.
    dropout: dropout rate in the heads.
    l2: L2 penalty on embeddings and kernels.
    dual_embedding_weight: weight of the dual-embedding losses (eq. 1 and 2).
    orthogonality_weight: weight of ||X^T X - I||_F^2.
    reconstruction_weight: weight of the autoencoders' reconstruction loss.
    unroll_gru: unroll the GRUs' T steps into the graph instead of a ``while``
      loop, for short fixed histories (T = 10 by default): no slower to
      train and faster under CPU contention; set False for long T (the graph
      grows with T).
    candidate_interactions: also feed each head the element-wise products of
      the candidate embedding with its projected attention output, GRU states
      and user embeddings (:class:`~dasl_tf.layers.CandidateInteraction`), next
      to the paper's concatenation.
    ranking_loss: the top-n loss over sampled training negatives, "bce" or
      "softmax" (:mod:`dasl_tf.losses`), or "none" for a CTR model alone;
      :func:`~dasl_tf.config_resolution.resolve_config` sets "none" when the
      run trains on no negatives. DASL's heads get a relevance output unless
      it is "none".
    ranking_weight: its weight next to the CTR loss.
    other_domain_dropout: in training, the fraction of examples whose other
      domain's history is hidden from their head (as for a user with no
      record there), so that the head also learns to score without it
      (DASL, DASL-DE, DASL-DA; Single-Domain reads no other domain).
    cooccurrence_score: add the item co-occurrence term of
      :class:`~dasl_tf.models.cooccurrence_score.CooccurrenceScore` to each
      DASL head's relevance output (with a ranking loss only): tables counted
      from the training split, one learned weight per head and source.
    recency_score: add ``w_D · log(1 + clicks of the item in the
      recent_window_days before the example's time)`` to each DASL head's
      relevance output (with a ranking loss, on data with real times).
    validation_term_weights: after training, choose the weights of each DASL
      head's top-n parts (relevance, item prior, co-occurrence and recency
      terms) by full-catalogue HR@10 on the validation split
      (:mod:`dasl_tf.term_weights`); False keeps the trained weights.
    sasrec_blocks: stacked self-attention blocks of each SASRec tower.
    sasrec_heads: attention heads per SASRec block (they split embedding_dim).
    knn_neighbors: neighbours kept per item by the item-kNN baselines
      (``item_knn``, ``item_knn_cross``, ``pop_item_knn``).
    recent_window_days: the trailing window of ``recent_popularity`` and of
      DASL's recency term, in days.
    timestamp_unit: the unit of the examples' ``timestamp`` feature, from
      ``schema.json`` ("seconds", "milliseconds" or "pseudo_time").
  """
  variant: str = "dasl"
  num_users: int = 0
  num_items_a: int = 0
  num_items_b: int = 0
  num_items_more: Tuple[int, ...] = ()
  history_length: int = 10
  user_num_dim: int = 0
  user_cat_vocab_sizes: Tuple[int, ...] = ()
  item_num_dim: int = 0
  item_cat_vocab_sizes: Tuple[int, ...] = ()
  embedding_dim: int = 32
  gru_units: int = 32
  attention_dim: int = 32
  hidden_units: Tuple[int, ...] = (64, 32)
  autoencoder_units: Tuple[int, ...] = (64,)
  dropout: float = 0.2
  l2: float = 1e-5
  dual_embedding_weight: float = 0.1
  orthogonality_weight: float = 1.0
  reconstruction_weight: float = 0.1
  unroll_gru: bool = True
  candidate_interactions: bool = True
  ranking_loss: str = "bce"
  ranking_weight: float = 1.0
  other_domain_dropout: float = 0.3
  cooccurrence_score: bool = True
  recency_score: bool = True
  validation_term_weights: bool = True
  sasrec_blocks: int = 2
  sasrec_heads: int = 1
  knn_neighbors: int = 100
  recent_window_days: int = 90
  timestamp_unit: str = "seconds"

  _RANGES: ClassVar[Mapping[str, _Rule]] = {
      **{name: _NON_NEGATIVE for name in ("num_users", "num_items_a", "num_items_b",
                                          "num_items_more", "user_num_dim", "item_num_dim")},
      **{name: _POSITIVE for name in (
          "history_length", "user_cat_vocab_sizes", "item_cat_vocab_sizes", "embedding_dim",
          "gru_units", "attention_dim", "hidden_units", "autoencoder_units", "sasrec_blocks",
          "sasrec_heads", "knn_neighbors", "recent_window_days")},
      "dropout": _RATE,
      "other_domain_dropout": _RATE,
      **{name: _NON_NEGATIVE for name in ("l2", "dual_embedding_weight", "orthogonality_weight",
                                          "reconstruction_weight", "ranking_weight")},
      "ranking_loss": _one_of(RANKING_LOSSES + (NO_RANKING_LOSS,)),
      "timestamp_unit": _one_of(TIMESTAMP_UNITS),
  }

  def _check(self) -> None:
    if self.num_domains > MAX_DOMAINS:
      raise ConfigError(f"ModelConfig.num_items_more: {self.num_domains} domains, at most "
                        f"{MAX_DOMAINS}")
    if self.num_domains > 2 and self.variant not in K_DOMAIN_VARIANTS:
      raise ConfigError(
          f"{self.variant} is a two-domain model and the data has {self.num_domains} domains; "
          f"use {', '.join(K_DOMAIN_VARIANTS[:-1])} or {K_DOMAIN_VARIANTS[-1]} for K domains")
    if self.variant == "sasrec" and self.embedding_dim % self.sasrec_heads:
      raise ConfigError(f"ModelConfig.sasrec_heads={self.sasrec_heads} must divide "
                        f"embedding_dim={self.embedding_dim} (the heads split it)")

  @property
  def num_domains(self) -> int:
    """K, the model's domains (heads)."""
    return 2 + len(self.num_items_more)

  @property
  def num_items(self) -> Tuple[int, ...]:
    """The item vocabulary size of each of the K domains, in domain order."""
    return (self.num_items_a, self.num_items_b, *self.num_items_more)

  @property
  def dual_embedding(self) -> bool:
    """Whether the variant maps user embeddings between the domains (eq. 1-2)."""
    return DASL_VARIANTS.get(self.variant, (False, "own"))[0]

  @property
  def attention_mode(self) -> str:
    """The variant's attention: "joint", "separate" or "own" (:data:`DASL_VARIANTS`)."""
    return DASL_VARIANTS.get(self.variant, (False, "own"))[1]

  @property
  def dual_attention(self) -> bool:
    """Whether one softmax runs over both domains' records (eq. 6-7)."""
    return self.attention_mode == "joint"


@dataclasses.dataclass(frozen=True)
class TrainConfig(_JsonMixin):
  """How a model is trained.

  Attributes:
    batch_size: global batch size (split across replicas).
    learning_rate: Adam learning rate.
    clipnorm: clips each variable's gradient to this L2 norm, variable by
      variable (Keras ``clipnorm``; not a global norm); 0 disables it.
    epochs: maximum number of epochs; training may stop earlier (early stopping).
    steps_per_epoch: steps per epoch, or 0 for one pass over the training data.
    train_steps: total training steps (TFX ``train_steps``), or 0 to train for
      ``epochs`` epochs; when set, the data repeats and ``epochs`` is derived.
    eval_steps: evaluation steps, or 0 for the whole evaluation split.
    early_stopping_patience: epochs without improvement of the monitored metric.
    monitor: metric of the validation split watched by early stopping and
      best-epoch selection; the default, ``val_loss``, is the training
      objective itself (CTR and ranking terms) on the validation split.
    shuffle_buffer: examples held by the shuffle buffer.
    train_negatives: sampled negatives per training example fed to the
      ranking loss: 0 for the CTR loss alone, else the count; -1 for the
      data's ``num_train_negatives`` (with fresh draws: 16 when the data
      stores none). "stored" sampling takes the first ``train_negatives``
      of those the data carries.
    negative_sampling: where the training negatives come from
      (:mod:`dasl_tf.negatives`): "stored" (those ``dasl-prepare`` wrote,
      the same every epoch), or drawn fresh for every epoch in the input
      pipeline, "uniform" over the domain's items or "popularity" (by
      training records per item ``** negative_sampling_alpha``, with the
      log-q correction of :mod:`dasl_tf.losses`).
    negative_sampling_alpha: the exponent of popularity sampling, in [0, 2].
    seed: seed for initialisation, shuffling and negative sampling.
    strategy: "default", "mirrored" or "multi_worker".
    full_catalogue_positives: test (and validation) positives per domain ranked
      against the domain's full catalogue for ``hr10_full_*`` (a seeded sample;
      0 = off).
  """
  batch_size: int = 256
  learning_rate: float = 3e-3
  clipnorm: float = 1.0
  epochs: int = 20
  steps_per_epoch: int = 0
  train_steps: int = 0
  eval_steps: int = 0
  early_stopping_patience: int = 2
  monitor: str = "val_loss"
  shuffle_buffer: int = 20000
  train_negatives: int = -1
  negative_sampling: str = "popularity"
  negative_sampling_alpha: float = 0.75
  seed: int = 42
  strategy: str = "default"
  full_catalogue_positives: int = 2000

  _RANGES: ClassVar[Mapping[str, _Rule]] = {
      **{name: _ABOVE_ZERO for name in ("batch_size", "learning_rate", "epochs")},
      **{name: _NON_NEGATIVE for name in (
          "clipnorm", "steps_per_epoch", "train_steps", "eval_steps", "early_stopping_patience",
          "full_catalogue_positives")},
      "shuffle_buffer": _POSITIVE,
      "train_negatives": (">= -1 (-1: as many as the data carries, 0: CTR loss only)",
                          lambda v: v >= -1),
      "negative_sampling": _one_of(NEGATIVE_SAMPLINGS),
      "negative_sampling_alpha": ("in [0, 2]", lambda v: 0 <= v <= 2),
      "strategy": _one_of(STRATEGIES),
  }

  def _check(self) -> None:
    monitor_mode(self.monitor)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_JsonMixin):
  """The full, resolved configuration of one training run."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


_NESTED = {"ModelConfig": ModelConfig, "TrainConfig": TrainConfig}
