"""Examples in the prepared format with a planted taste signal, for tests after ``dasl-prepare``.

:func:`planted_examples` draws the arrays of :mod:`dasl_tf.features`
(vocabulary ids) with a strong taste signal that a small model learns in a few
steps; :func:`write_examples` writes them as a TFRecord file. Raw logs for the
whole pipeline come from :mod:`dasl_tf.synthetic`.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Union

import numpy as np

from dasl_tf import features as F


@dataclasses.dataclass(frozen=True)
class PlantedConfig:
  """Shape of prepared-format examples with a planted taste signal (:func:`planted_examples`).

  Users and items have a taste, the parity of their id: ``taste(x) = x mod 2``.
  An example with taste ``t`` (its user's, or its own with
  ``taste_per_user=False``) is clicked with probability ``click_rate`` when its
  target item has taste ``t`` and ``1 - click_rate`` otherwise, and the
  histories of the ``revealing_domains`` hold items of taste ``t`` (each of the
  other taste with probability ``history_noise``); the other histories hold
  uniformly drawn items. The signal is thus read from the user id, from the
  revealing histories and from the target item, or, with
  ``taste_per_user=False``, only from the revealing histories and the target.

  Ids follow :mod:`dasl_tf.features`: 0 is padding, 1 out-of-vocabulary, real
  ids start at 2, and the sizes below are vocabulary sizes (as in
  ``ModelConfig``), reserved ids included.

  Attributes:
    num_users: user vocabulary size; the users are ``2 .. num_users - 1``.
    num_items_a: item vocabulary size of domain A (at least 4: both tastes).
    num_items_b: item vocabulary size of domain B (at least 4).
    history_length: T, the padded length of both histories.
    min_history_a: fewest real items of a domain-A history (lengths are
      uniform in ``[min_history_a, T]``).
    min_history_b: fewest real items of a domain-B history.
    click_rate: probability of a click on an item of the example's taste.
    history_noise: probability that an item of a revealing history is of the
      other taste.
    taste_per_user: whether an example's taste is its user's (else it is drawn
      per example, and the user id carries no signal).
    revealing_domains: the domains (``features.DOMAIN_A``/``DOMAIN_B``) whose
      histories follow the taste.
    pick_rate: probability that a target item is of the example's taste (the
      user picks what he likes, which a top-n objective can learn), or None
      for targets drawn uniformly over the domain's items.
  """
  num_users: int = 42
  num_items_a: int = 12
  num_items_b: int = 12
  history_length: int = 4
  min_history_a: int = 0
  min_history_b: int = 1
  click_rate: float = 0.9
  history_noise: float = 0.0
  taste_per_user: bool = True
  revealing_domains: Sequence[int] = (F.DOMAIN_A, F.DOMAIN_B)
  pick_rate: Optional[float] = None

  def __post_init__(self):
    if self.num_users <= F.NUM_RESERVED_IDS:
      raise ValueError(f"PlantedConfig.num_users must be > {F.NUM_RESERVED_IDS} "
                       f"(reserved ids included), got {self.num_users}")
    for name in ("num_items_a", "num_items_b"):
      if getattr(self, name) < F.NUM_RESERVED_IDS + 2:
        raise ValueError(f"PlantedConfig.{name} must be >= {F.NUM_RESERVED_IDS + 2} (an item "
                         f"of each taste besides the reserved ids), got {getattr(self, name)}")
    for name in ("min_history_a", "min_history_b"):
      if not 0 <= getattr(self, name) <= self.history_length:
        raise ValueError(f"PlantedConfig.{name} must be in [0, history_length="
                         f"{self.history_length}], got {getattr(self, name)}")
    for name in ("click_rate", "history_noise", "pick_rate"):
      if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"PlantedConfig.{name} must be in [0, 1], got {getattr(self, name)}")
    unknown = set(self.revealing_domains) - {F.DOMAIN_A, F.DOMAIN_B}
    if unknown:
      raise ValueError(f"PlantedConfig.revealing_domains must hold features.DOMAIN_A/DOMAIN_B, "
                       f"got {tuple(self.revealing_domains)}")


def _items_of_taste(rng: np.random.Generator, taste: np.ndarray,
                    vocab_size: Union[int, np.ndarray]) -> np.ndarray:
  """A uniformly drawn item id of each taste (parity) of ``taste``, in ``[2, vocab_size)``.

  ``vocab_size`` is one size or an array that broadcasts against ``taste``.
  """
  count = (vocab_size - F.NUM_RESERVED_IDS - taste + 1) // 2  # ids 2 + taste, 4 + taste, ...
  return F.NUM_RESERVED_IDS + taste + 2 * (rng.random(taste.shape) * count).astype(np.int64)


def _planted_history(rng: np.random.Generator, config: PlantedConfig, domain: int,
                     taste: np.ndarray) -> np.ndarray:
  """Left-padded histories of ``domain``, int64 [N, T]."""
  n, t = taste.size, config.history_length
  vocab_size = config.num_items_a if domain == F.DOMAIN_A else config.num_items_b
  if domain in config.revealing_domains:
    flipped = rng.random((n, t)) < config.history_noise
    items = _items_of_taste(rng, np.where(flipped, 1 - taste[:, None], taste[:, None]),
                            vocab_size)
  else:
    items = rng.integers(F.NUM_RESERVED_IDS, vocab_size, (n, t))
  minimum = config.min_history_a if domain == F.DOMAIN_A else config.min_history_b
  length = rng.integers(minimum, t + 1, n)
  real = np.arange(t)[None, :] >= (t - length)[:, None]
  return np.where(real, items, F.PAD_ID)


def planted_examples(config: PlantedConfig, examples_per_user: int, seed: int,
                     users: Optional[Sequence[int]] = None, num_negatives: int = 0,
                     num_train_negatives: int = 0) -> Dict[str, np.ndarray]:
  """Draws examples in the prepared format with the taste signal of ``config``.

  Each example's target domain is A or B with probability 1/2 and its target
  item uniform over the domain's items; the rows are in random order.

  Example:
    >>> config = PlantedConfig(num_users=6, history_length=3)
    >>> examples = planted_examples(config, examples_per_user=2, seed=0)
    >>> sorted(examples)
    ['domain', 'hist_a', 'hist_b', 'item_id', 'label', 'user_id']
    >>> examples["hist_b"].shape
    (8, 3)

  Args:
    config: the taste model and the sizes.
    examples_per_user: examples drawn for each user.
    seed: seed of every draw; the tastes do not depend on it, so draws with
      different seeds (train and evaluation splits) share them.
    users: the users to draw for (default: every user of the vocabulary).
    num_negatives: K, uniformly drawn items of the target's domain per
      example in ``features.NEGATIVES`` (0: no such feature), as evaluation
      splits carry them.
    num_train_negatives: k, uniformly drawn items of the target's domain per
      example in ``features.TRAIN_NEGATIVES`` (0: no such feature), as training
      splits carry them.

  Returns:
    ``{feature name: array}`` as :meth:`features.FeatureSpec.shapes` describes
    them (int64 ids, ``label`` float32 0/1, histories ``[N, T]``, negatives
    ``[N, K]`` and ``[N, k]``), ``N = len(users) * examples_per_user``.
  """
  rng = np.random.default_rng(seed)
  if users is None:
    users = np.arange(F.NUM_RESERVED_IDS, config.num_users)
  user = np.repeat(np.asarray(users, np.int64), examples_per_user)
  n = user.size
  taste = user % 2 if config.taste_per_user else rng.integers(0, 2, n)
  domain = rng.choice(np.array([F.DOMAIN_A, F.DOMAIN_B], np.int64), n)
  vocab_size = np.where(domain == F.DOMAIN_A, config.num_items_a, config.num_items_b)
  if config.pick_rate is None:
    item = rng.integers(F.NUM_RESERVED_IDS, vocab_size)
  else:
    item = _items_of_taste(rng, np.where(rng.random(n) < config.pick_rate, taste, 1 - taste),
                           vocab_size)
  click_rate = np.where(item % 2 == taste, config.click_rate, 1.0 - config.click_rate)
  examples = {
      F.USER_ID: user, F.ITEM_ID: item, F.DOMAIN: domain,
      F.LABEL: (rng.random(n) < click_rate).astype(np.float32),
      F.HIST_A: _planted_history(rng, config, F.DOMAIN_A, taste),
      F.HIST_B: _planted_history(rng, config, F.DOMAIN_B, taste),
  }
  for name, width in ((F.NEGATIVES, num_negatives), (F.TRAIN_NEGATIVES, num_train_negatives)):
    if width:  # uniform over the target's domain, as dasl-prepare draws both
      examples[name] = rng.integers(F.NUM_RESERVED_IDS, vocab_size[:, None], (n, width))
  order = rng.permutation(n)
  return {name: values[order] for name, values in examples.items()}


def write_examples(path: str, examples: Dict[str, np.ndarray], spec: F.FeatureSpec) -> None:
  """Writes examples (arrays as :func:`planted_examples` returns them) as a TFRecord file.

  Args:
    path: the file to write.
    examples: ``{feature name: array}``, one row per example.
    spec: the feature spec the records follow (:meth:`features.FeatureSpec.encode`).
  """
  # Imported here, not at the top: the raw-log generator runs without TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  num_examples = len(next(iter(examples.values())))
  with tf.io.TFRecordWriter(path) as writer:
    for row in range(num_examples):
      writer.write(spec.encode({name: values[row] for name, values in examples.items()}))
