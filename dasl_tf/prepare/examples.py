"""The per-user function: one user's timeline -> that user's examples.

Both drivers (the local one and the Beam pipeline) call
:func:`build_user_examples` on each user, so they produce the same examples.
It depends only on the user's records and :class:`ExampleParams` (its random
draws use a generator seeded by ``(seed, user)``), never on other users or on
the order in which users are processed.

For the record at position ``j`` (time ``t_j``) of a user, the example is the
target ``(item_j, domain_j, label_j)`` with

  hist_a = the last T domain-A items of the user with time < t_j,
  hist_b = the last T domain-B items of the user with time < t_j,

in time order, left-padded with 0. Records at the *same* time as the target
are never in its history (no leakage through ties). Split: in the temporal
split the last ``round(n * eval_fraction)`` examples of a user with n >= 2
examples (at least one, at most n - 1) go to ``eval``; in the k-fold split every example of a
user goes to the user's fold. Examples of evaluation splits carry
``num_negatives`` items sampled without replacement from the items of the
target's domain that the user never interacted with.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import numpy as np

from dasl_tf.features import DOMAIN_A, DOMAIN_B, NUM_RESERVED_IDS
from dasl_tf.prepare import splits
from dasl_tf.prepare.config import PrepareConfig, PrepareError


COUNT_KEYS = ("examples", "positives", "domain_a", "domain_b")


@dataclasses.dataclass(frozen=True)
class ExampleParams:
  """What the per-user function needs besides the user's records.

  Attributes:
    history_length: T.
    temporal: temporal split (else k-fold by user).
    eval_fraction: share of a user's examples in the temporal eval split.
    num_negatives: K.
    negatives_by_split: whether split ``s`` (by index) carries negatives.
    item_vocab_sizes: item vocabulary sizes of domains A and B (reserved ids included).
    seed: seed of the negative sampling.
  """
  history_length: int
  temporal: bool
  eval_fraction: float
  num_negatives: int
  negatives_by_split: Tuple[bool, ...]
  item_vocab_sizes: Tuple[int, int]
  seed: int

  @classmethod
  def from_config(cls, config: PrepareConfig, item_vocab_sizes: Tuple[int, int]
                 ) -> "ExampleParams":
    return cls(config.history_length, config.split == "temporal", config.eval_fraction,
               config.num_negatives,
               tuple(config.carries_negatives(name) for name in config.split_names),
               tuple(item_vocab_sizes), config.seed)


@dataclasses.dataclass
class UserTimeline:
  """One user's records in time order (stable ties).

  Attributes:
    user: the user's index.
    item: int64 [n]. domain: int64 [n]. label: float32 [n]. timestamp: float64 [n].
    fold: the user's fold (k-fold split), else -1.
  """
  user: int
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  fold: int = -1


@dataclasses.dataclass
class Examples:
  """A batch of examples as arrays (n examples).

  Attributes:
    user, item, domain: int64 [n]. label: float32 [n].
    hist_a, hist_b: int64 [n, T].
    split: index of the example's split, int64 [n].
    negatives: int64 [n, K]; rows of splits without negatives are 0.
  """
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  hist_a: np.ndarray
  hist_b: np.ndarray
  split: np.ndarray
  negatives: np.ndarray

  def __len__(self) -> int:
    return len(self.user)

  def take(self, rows: np.ndarray) -> "Examples":
    return Examples(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

  def counts(self) -> Dict[str, int]:
    """Examples, positives and examples per domain, as written to ``stats.json``."""
    return {"examples": len(self), "positives": int(self.label.sum()),
            "domain_a": int((self.domain == DOMAIN_A).sum()),
            "domain_b": int((self.domain == DOMAIN_B).sum())}

  @classmethod
  def concat(cls, parts: Sequence["Examples"]) -> "Examples":
    return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                  for f in dataclasses.fields(cls)})


def last_before(positions: np.ndarray, items: np.ndarray, cutoffs: np.ndarray,
                history_length: int) -> np.ndarray:
  """For each cutoff c, the last ``history_length`` items at positions < c, left-padded.

  Args:
    positions: sorted positions of one domain's records in the timeline, int [m].
    items: their items, int64 [m].
    cutoffs: per example, the number of timeline records strictly earlier, int [n].
    history_length: T.

  Returns:
    int64 [n, T], most recent last, 0 = padding.
  """
  if not len(items):
    return np.zeros((len(cutoffs), history_length), dtype=np.int64)
  count = np.searchsorted(positions, cutoffs, side="left")
  index = count[:, None] - history_length + np.arange(history_length)
  return np.where(index >= 0, items[np.maximum(index, 0)], 0).astype(np.int64)


def sample_negatives(rng: np.random.Generator, touched: np.ndarray, vocab_size: int,
                     count: int, num_negatives: int) -> np.ndarray:
  """Samples items never touched, without replacement within each row.

  Each row is the first K distinct values of a stream of uniform draws over
  the untouched items, which is a uniform K-subset; rows whose stream of
  ``K + margin`` draws holds fewer than K distinct values are redrawn with
  ``Generator.choice(replace=False)``.

  Args:
    rng: the user's generator.
    touched: items of the domain the user interacted with, int64 [m].
    vocab_size: the domain's vocabulary size (ids 2..vocab_size-1 are items).
    count: rows to draw.
    num_negatives: K, items per row.

  Returns:
    int64 [count, K].

  Raises:
    PrepareError: fewer than K items are left to sample from.
  """
  members = np.unique(touched[touched >= NUM_RESERVED_IDS]) - NUM_RESERVED_IDS
  available = vocab_size - NUM_RESERVED_IDS - len(members)
  if available < num_negatives:
    raise PrepareError(f"only {available} items are left to sample {num_negatives} negatives "
                       "from; lower --num_negatives")
  width = num_negatives + max(16, int(np.ceil(3 * num_negatives ** 2 / available)))
  draws = rng.integers(0, available, size=(count, width))
  order = np.argsort(draws, axis=1, kind="stable")
  ordered = np.take_along_axis(draws, order, axis=1)
  first = np.ones_like(draws, dtype=bool)
  first_sorted = np.ones_like(draws, dtype=bool)
  first_sorted[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
  np.put_along_axis(first, order, first_sorted, axis=1)
  keep = first & (np.cumsum(first, axis=1) <= num_negatives)
  ranks = np.zeros((count, num_negatives), dtype=np.int64)
  complete = keep.sum(axis=1) == num_negatives
  ranks[complete] = draws[complete][keep[complete]].reshape(-1, num_negatives)
  for row in np.flatnonzero(~complete):
    ranks[row] = rng.choice(available, num_negatives, replace=False)
  gaps = members - np.arange(len(members))
  return (ranks + NUM_RESERVED_IDS + np.searchsorted(gaps, ranks, side="right")).astype(np.int64)


def build_user_examples(timeline: UserTimeline, params: ExampleParams) -> Examples:
  """All examples of one user (see the module docstring for the exact rules)."""
  n = len(timeline.item)
  t = params.history_length
  earlier = np.searchsorted(timeline.timestamp, timeline.timestamp, side="left")
  histories = []
  for domain in (DOMAIN_A, DOMAIN_B):
    positions = np.flatnonzero(timeline.domain == domain)
    histories.append(last_before(positions, timeline.item[positions], earlier, t))
  if params.temporal:
    split = np.zeros(n, dtype=np.int64)
    split[n - splits.temporal_eval_count(n, params.eval_fraction):] = 1
  else:
    split = np.full(n, timeline.fold, dtype=np.int64)
  negatives = np.zeros((n, params.num_negatives), dtype=np.int64)
  needs = np.asarray(params.negatives_by_split, dtype=bool)[split]
  if needs.any():
    rng = np.random.default_rng((params.seed, timeline.user))
    for domain in (DOMAIN_A, DOMAIN_B):
      rows = np.flatnonzero(needs & (timeline.domain == domain))
      if len(rows):
        try:
          negatives[rows] = sample_negatives(
              rng, timeline.item[timeline.domain == domain], params.item_vocab_sizes[domain],
              len(rows), params.num_negatives)
        except PrepareError as e:
          raise PrepareError(f"user index {timeline.user}, domain {'AB'[domain]}: {e}") from e
  return Examples(np.full(n, timeline.user, dtype=np.int64), timeline.item.astype(np.int64),
                  timeline.domain.astype(np.int64), timeline.label.astype(np.float32),
                  histories[0], histories[1], split, negatives)
