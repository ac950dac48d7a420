"""The per-user function: users' timelines -> their examples.

Both drivers (the local one and the Beam pipeline) call
:func:`build_user_examples`, so they produce the same examples. The Beam
pipeline calls it on one user at a time (after grouping by user); the local
driver calls it on chunks of complete users, where it runs vectorised over
all their records. Its output for a user depends only on that user's records
and :class:`ExampleParams`: random draws come from a counter-based hash of
``(seed, user, example rank, draw)``, never from a shared generator, so
neither chunking nor processing order changes a single example.

For the record at position ``j`` (time ``t_j``) of a user, the example is the
target ``(item_j, domain_j, label_j)`` with, for each of the K ≥ 2 domains d,

  hist_d = the last T domain-d items of the user with time < t_j

(``hist_a``, ``hist_b``, ... in domain order), in time order, left-padded with 0. Records at the *same* time as the target
are never in its history (no leakage through ties). The example's split is
the record's (:mod:`dasl_tf.prepare.splits`, assigned before the vocabularies),
and its ``timestamp`` the record's time as an integer (the split rules' time).

A cold-start user (one with a held-out domain d, :mod:`dasl_tf.prepare.splits`)
has an empty ``hist_d`` in every example of the other domain; the examples of
domain d (all in ``test``) follow the rules above.

Negatives, both drawn per example with a counter-based hash:

* evaluation negatives (``negatives``, K per example of an evaluation
  split): distinct items drawn uniformly from the items of the target's
  domain that the user never interacted with (HR@K);
* training negatives (``train_negatives``, k per example of a split trained
  on): distinct items of the target's domain that the user has not touched up
  to the target's time (records at the target's time count as touched, the
  target included), drawn uniformly or by ``train count ** alpha``. Items the
  user touches only later may be drawn: the future is not looked at.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from dasl_tf.features import NUM_RESERVED_IDS, domain_suffix
from dasl_tf.prepare.config import PrepareConfig, PrepareError



def count_keys(num_domains: int = 2) -> Tuple[str, ...]:
  """The keys of a split's counts in ``stats.json``: examples, positives, ``domain_<suffix>``."""
  return ("examples", "positives", *(f"domain_{domain_suffix(d)}" for d in range(num_domains)))


@dataclasses.dataclass(frozen=True)
class ExampleParams:
  """What the per-user function needs besides the user's records.

  Attributes:
    history_length: T.
    num_negatives: K, evaluation negatives per example.
    negatives_by_split: whether split ``s`` (by index) carries evaluation negatives.
    item_vocab_sizes: item vocabulary size of each of the K domains (reserved ids
      included); K is its length.
    seed: seed of the negative sampling.
    train_negatives: k, training negatives per example.
    train_negatives_by_split: whether split ``s`` carries training negatives.
    train_negative_cdfs: per domain, the cumulative distribution over the
      domain's items (ids 2..) of the training negatives, float64 [V - 2], or
      None for uniform draws; empty = uniform in every domain.
  """
  history_length: int
  num_negatives: int
  negatives_by_split: Tuple[bool, ...]
  item_vocab_sizes: Tuple[int, ...]
  seed: int
  train_negatives: int = 0
  train_negatives_by_split: Tuple[bool, ...] = ()
  train_negative_cdfs: Tuple[Optional[np.ndarray], ...] = ()

  @property
  def num_domains(self) -> int:
    return len(self.item_vocab_sizes)

  def train_negative_cdf(self, domain: int) -> Optional[np.ndarray]:
    """The draw distribution of ``domain``'s training negatives (None: uniform)."""
    return self.train_negative_cdfs[domain] if self.train_negative_cdfs else None

  @classmethod
  def from_config(cls, config: PrepareConfig, item_vocab_sizes: Sequence[int],
                  train_item_counts: Sequence[np.ndarray]) -> "ExampleParams":
    """The parameters of ``config``.

    Args:
      config: the run's configuration.
      item_vocab_sizes: item vocabulary size of each domain.
      train_item_counts: per domain, records per item index in the splits
        trained on, int [V] (popularity sampling reads it).
    """
    cdfs = ()
    if config.negative_sampling == "popularity":
      cdfs = tuple(popularity_cdf(counts, config.negative_alpha)
                   for counts in train_item_counts)
    return cls(config.history_length, config.num_negatives,
               tuple(config.carries_negatives(name) for name in config.split_names),
               tuple(item_vocab_sizes), config.seed, config.train_negatives,
               tuple(config.carries_train_negatives(name) for name in config.split_names),
               cdfs)


def popularity_cdf(counts: np.ndarray, alpha: float) -> np.ndarray:
  """The cumulative distribution ``count ** alpha`` over items 2.. of a vocabulary.

  Args:
    counts: records per item index, int [V] (the reserved ids 0 and 1 are ignored).
    alpha: the exponent (0 gives uniform draws).

  Returns:
    float64 [V - 2], increasing to 1.
  """
  weights = np.asarray(counts[NUM_RESERVED_IDS:], dtype=np.float64) ** alpha
  if not weights.sum() > 0:
    weights = np.ones_like(weights)
  cdf = np.cumsum(weights)
  return cdf / cdf[-1]


@dataclasses.dataclass
class Timelines:
  """Records of one or more complete users, grouped by user, each in time order.

  Attributes:
    user: user index per record, int64 [N] (equal users are contiguous).
    item: int64 [N]. domain: int64 [N]. label: float32 [N].
    timestamp: the time that orders the records and their histories, float64 [N].
    split: the record's split index, int64 [N].
    time: the record's integer time (``timestamp`` feature), int64 [N].
    held_out: the held-out domain of the record's user, int64 [N]
      (``splits.NO_DOMAIN`` = none).
  """
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  split: np.ndarray
  time: np.ndarray
  held_out: np.ndarray


@dataclasses.dataclass
class Examples:
  """A batch of examples as arrays (n examples).

  Attributes:
    user, item, domain: int64 [n]. label: float32 [n].
    histories: int64 [n, K, T]: ``[:, d]`` is ``hist_<suffix of d>``.
    split: index of the example's split, int64 [n].
    negatives: evaluation negatives, int64 [n, K]; rows of splits without them are 0.
    train_negatives: training negatives, int64 [n, k]; rows of splits without them are 0.
    timestamp: the target record's integer time, int64 [n].
  """
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  histories: np.ndarray
  split: np.ndarray
  negatives: np.ndarray
  train_negatives: np.ndarray
  timestamp: np.ndarray

  def __len__(self) -> int:
    return len(self.user)

  def take(self, rows: np.ndarray) -> "Examples":
    return Examples(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

  def counts(self) -> Dict[str, int]:
    """Examples, positives and examples per domain (:func:`count_keys`), for ``stats.json``."""
    per_domain = np.bincount(self.domain, minlength=self.histories.shape[1])
    return dict(zip(count_keys(self.histories.shape[1]),
                    (len(self), int(self.label.sum()), *(int(n) for n in per_domain))))

  @classmethod
  def concat(cls, parts: Sequence["Examples"]) -> "Examples":
    return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                  for f in dataclasses.fields(cls)})


def _run_starts(*keys: np.ndarray) -> np.ndarray:
  """For each row, the index of the first row of its run of equal ``keys``, int64 [N]."""
  n = len(keys[0])
  new = np.zeros(n, dtype=bool)
  new[:1] = True
  for key in keys:
    new[1:] |= key[1:] != key[:-1]
  return np.maximum.accumulate(np.where(new, np.arange(n), 0))


def _run_sizes(starts: np.ndarray) -> np.ndarray:
  """For each row, the length of its run, given :func:`_run_starts`, int64 [N]."""
  first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]]) if len(starts) else starts
  sizes = np.diff(np.append(first, len(starts)))
  return np.repeat(sizes, sizes)


def last_before(positions: np.ndarray, items: np.ndarray, cutoffs: np.ndarray,
                floors: np.ndarray, history_length: int) -> np.ndarray:
  """For each row, the last ``history_length`` items at positions in [floor, cutoff).

  Args:
    positions: sorted positions of one domain's records, int [m].
    items: their items, int64 [m].
    cutoffs: per row, the first position that is not strictly earlier, int [n].
    floors: per row, the first position of the row's user, int [n].
    history_length: T.

  Returns:
    int64 [n, T], most recent last, 0 = padding.
  """
  if not len(items):
    return np.zeros((len(cutoffs), history_length), dtype=np.int64)
  count = np.searchsorted(positions, cutoffs, side="left")
  first = np.searchsorted(positions, floors, side="left")
  index = count[:, None] - history_length + np.arange(history_length)
  return np.where(index >= first[:, None], items[np.maximum(index, 0)], 0)


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  """The SplitMix64 finaliser: a bijective hash of uint64 values."""
  with np.errstate(over="ignore"):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hashed_uniform(seed: int, user: np.ndarray, rank: np.ndarray, draws: int,
                   high: np.ndarray) -> np.ndarray:
  """Reproducible uniform integers in ``[0, high)`` keyed by (seed, user, rank, draw).

  Args:
    seed: the run's seed.
    user: int [n]. rank: int [n], the example's position within its user.
    draws: integers per row.
    high: exclusive upper bound per row, int [n].

  Returns:
    int64 [n, draws].
  """
  with np.errstate(over="ignore"):
    key = _splitmix64(np.uint64(seed) ^ _splitmix64(user.astype(np.uint64)))
    key = _splitmix64(key ^ rank.astype(np.uint64))
    bits = _splitmix64(key[:, None] + np.arange(draws, dtype=np.uint64)[None, :])
  return (bits % high.astype(np.uint64)[:, None]).astype(np.int64)


def _first_distinct(values: np.ndarray, valid: np.ndarray, count: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """Per row, the first ``count`` distinct valid values in order.

  Returns:
    (int64 [n, count], bool [n]: whether the row had ``count`` of them).
  """
  order = np.argsort(values, axis=1, kind="stable")
  ordered = np.take_along_axis(values, order, axis=1)
  repeat_sorted = np.zeros(values.shape, dtype=bool)
  repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
  repeat = np.empty_like(repeat_sorted)
  np.put_along_axis(repeat, order, repeat_sorted, axis=1)
  keep = valid & ~repeat
  keep &= np.cumsum(keep, axis=1) <= count
  complete = keep.sum(axis=1) == count
  out = np.zeros((len(values), count), dtype=np.int64)
  out[complete] = values[complete][keep[complete]].reshape(-1, count)
  return out, complete


TouchedFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def sample_negatives(seed: int, user: np.ndarray, rank: np.ndarray, touched: TouchedFn,
                     vocab_size: int, num_negatives: int, free_share: float = 1.0,
                     cdf: Optional[np.ndarray] = None) -> np.ndarray:
  """Samples, per row, K distinct items of one domain that ``touched`` allows.

  Each row takes the first K distinct allowed items of a stream of draws over
  the domain's items (uniform, or by ``cdf``), which for uniform draws is a
  uniform K-subset of the allowed items. A row whose stream runs short takes
  the rest from the explicit list of its allowed items, in hashed order.

  Args:
    seed: the stream's seed.
    user: user per row, int64 [n].
    rank: the example's position within its user, int64 [n].
    touched: ``touched(rows, items)`` -> bool [len(rows), m]: whether each of
      ``items`` (int64 [len(rows), m]) is excluded for row ``rows[i]``.
    vocab_size: the domain's vocabulary size (ids 2..vocab_size-1 are items).
    num_negatives: K.
    free_share: a lower bound on the share of items a row may draw (sizes the
      stream so that few rows fall back).
    cdf: cumulative draw distribution over ids 2.., float [vocab_size - 2];
      None draws uniformly.

  Returns:
    int64 [n, K].

  Raises:
    PrepareError: a row has fewer than K allowed items.
  """
  n = len(user)
  num_items = vocab_size - NUM_RESERVED_IDS
  free_share = max(free_share, 1.0 / max(num_items, 1))
  width = min(int(np.ceil((num_negatives + 8) * (1 + num_negatives / max(num_items, 1))
                          / free_share)), 4 * num_negatives) + 8
  if cdf is None:
    draws = hashed_uniform(seed, user, rank, width, np.full(n, num_items))
  else:
    uniform = hashed_uniform(seed, user, rank, width, np.full(n, 2 ** 53)) / 2.0 ** 53
    draws = np.minimum(np.searchsorted(cdf, uniform, side="right"), num_items - 1)
  draws = draws + NUM_RESERVED_IDS
  rows = np.arange(n)
  out, complete = _first_distinct(draws, ~touched(rows, draws), num_negatives)
  for row in np.flatnonzero(~complete):
    candidates = np.arange(NUM_RESERVED_IDS, vocab_size)
    allowed = candidates[~touched(np.array([row]), candidates[None, :])[0]]
    if len(allowed) < num_negatives:
      raise PrepareError(f"user index {user[row]}: only {len(allowed)} items are left to "
                         f"sample {num_negatives} negatives from; lower --num_negatives "
                         "or --train_negatives")
    scores = hashed_uniform(seed + 1, user[row:row + 1], rank[row:row + 1], len(allowed),
                            np.array([2 ** 62]))[0]
    out[row] = allowed[np.argsort(scores, kind="stable")[:num_negatives]]
  return out


def _key_lookup(keys: np.ndarray, query: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Positions of ``query`` in the sorted unique ``keys`` and whether each is present."""
  found = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
  present = keys[found] == query if len(keys) else np.zeros(query.shape, dtype=bool)
  return found, present


def _domain_negatives(timelines: Timelines, rows: np.ndarray, rank: np.ndarray, upto: np.ndarray,
                      domain: int, params: ExampleParams, train: bool) -> np.ndarray:
  """Evaluation (never touched) or training (not touched by then) negatives of ``rows``.

  ``upto[j]`` is the first position after record ``j``'s time: a training
  negative's (user, item) pair must not occur before it.
  """
  vocab_size = params.item_vocab_sizes[domain]
  in_domain = np.flatnonzero(timelines.domain == domain)
  pair_keys = timelines.user[in_domain] * vocab_size + timelines.item[in_domain]
  keys, first = np.unique(pair_keys, return_index=True)
  first_position = in_domain[first]
  user = timelines.user[rows]
  cutoff = upto[rows]

  def touched(local: np.ndarray, items: np.ndarray) -> np.ndarray:
    found, present = _key_lookup(keys, user[local, None] * vocab_size + items)
    if not train:
      return present
    return present & (first_position[found] < cutoff[local, None])

  busiest = np.unique(keys // vocab_size, return_counts=True)[1].max() if len(keys) else 0
  free_share = 1.0 - busiest / max(vocab_size - NUM_RESERVED_IDS, 1)
  if train:
    return sample_negatives(params.seed + _TRAIN_STREAM, user, rank[rows], touched,
                            vocab_size, params.train_negatives, free_share,
                            params.train_negative_cdf(domain))
  return sample_negatives(params.seed, user, rank[rows], touched, vocab_size,
                          params.num_negatives, free_share)


# Offset of the training negatives' seed, so they are drawn independently of evaluation's.
_TRAIN_STREAM = 2 ** 32


def build_user_examples(timelines: Timelines, params: ExampleParams) -> Examples:
  """All examples of the users in ``timelines`` (see the module docstring for the rules)."""
  n = len(timelines.item)
  user_start = _run_starts(timelines.user)
  earlier = _run_starts(timelines.user, timelines.timestamp)
  histories = np.zeros((n, params.num_domains, params.history_length), dtype=np.int64)
  for domain in range(params.num_domains):
    positions = np.flatnonzero(timelines.domain == domain)
    histories[:, domain] = last_before(positions, timelines.item[positions], earlier,
                                       user_start, params.history_length)
    histories[(timelines.held_out == domain) & (timelines.domain != domain), domain] = 0
  rank = np.arange(n) - user_start
  upto = earlier + _run_sizes(earlier)
  split = timelines.split.astype(np.int64)
  sampled = {}
  for train, count, by_split in ((False, params.num_negatives, params.negatives_by_split),
                                 (True, params.train_negatives,
                                  params.train_negatives_by_split)):
    sampled[train] = np.zeros((n, count), dtype=np.int64)
    if not count:
      continue
    needs = np.asarray(by_split, dtype=bool)[split]
    for domain in range(params.num_domains):
      rows = np.flatnonzero(needs & (timelines.domain == domain))
      if len(rows):
        sampled[train][rows] = _domain_negatives(timelines, rows, rank, upto, domain, params,
                                                 train)
  return Examples(timelines.user.astype(np.int64), timelines.item.astype(np.int64),
                  timelines.domain.astype(np.int64), timelines.label.astype(np.float32),
                  histories, split, sampled[False], sampled[True],
                  timelines.time.astype(np.int64))
