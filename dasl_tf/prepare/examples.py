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
target ``(item_j, domain_j, label_j)`` with

  hist_a = the last T domain-A items of the user with time < t_j,
  hist_b = the last T domain-B items of the user with time < t_j,

in time order, left-padded with 0. Records at the *same* time as the target
are never in its history (no leakage through ties). Split: in the temporal
split the last ``round(n * eval_fraction)`` examples of a user with n >= 2
examples (at least one, at most n - 1) go to ``eval``; in the k-fold split
every example of a user goes to the user's fold. Examples of evaluation splits
carry ``num_negatives`` distinct items drawn uniformly from the items of the
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
class Timelines:
  """Records of one or more complete users, grouped by user, each in time order.

  Attributes:
    user: user index per record, int64 [N] (equal users are contiguous).
    item: int64 [N]. domain: int64 [N]. label: float32 [N]. timestamp: float64 [N].
    fold: the user's fold per record (k-fold split), else -1, int64 [N].
  """
  user: np.ndarray
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  fold: np.ndarray


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


def sample_negatives(seed: int, user: np.ndarray, rank: np.ndarray, touched_keys: np.ndarray,
                     vocab_size: int, num_negatives: int) -> np.ndarray:
  """Samples, per row, K distinct items of one domain that the row's user never touched.

  Each row takes the first K distinct untouched items of a stream of uniform
  draws over the domain's items, which is a uniform K-subset of the untouched
  items. A row whose stream runs short draws from the explicit list of its
  user's untouched items instead.

  Args:
    seed: the run's seed.
    user: user per row, int64 [n].
    rank: the example's position within its user, int64 [n].
    touched_keys: sorted unique ``user * vocab_size + item`` of every (user,
      item) pair of the domain in the users' records, int64 [m].
    vocab_size: the domain's vocabulary size (ids 2..vocab_size-1 are items).
    num_negatives: K.

  Returns:
    int64 [n, K].

  Raises:
    PrepareError: a user has fewer than K untouched items.
  """
  n = len(user)
  num_items = vocab_size - NUM_RESERVED_IDS
  touched_users = touched_keys // vocab_size
  busiest = np.bincount(touched_users - touched_users.min()).max() if len(touched_keys) else 0
  free_share = max(1.0 - busiest / num_items, 1.0 / num_items)
  # Enough draws that K distinct untouched ones are very likely; the rest fall back.
  width = min(int(np.ceil((num_negatives + 8) * (1 + num_negatives / num_items) / free_share)),
              4 * num_negatives) + 8
  draws = NUM_RESERVED_IDS + hashed_uniform(seed, user, rank, width, np.full(n, num_items))
  keys = user[:, None] * vocab_size + draws
  found = np.searchsorted(touched_keys, keys)
  touched = touched_keys[np.minimum(found, len(touched_keys) - 1)] == keys
  out, complete = _first_distinct(draws, ~touched, num_negatives)
  for row in np.flatnonzero(~complete):
    low, high = np.searchsorted(touched_keys, [user[row] * vocab_size,
                                               (user[row] + 1) * vocab_size])
    untouched = np.setdiff1d(np.arange(NUM_RESERVED_IDS, vocab_size),
                             touched_keys[low:high] - user[row] * vocab_size)
    if len(untouched) < num_negatives:
      raise PrepareError(f"user index {user[row]}: only {len(untouched)} items are left to "
                         f"sample {num_negatives} negatives from; lower --num_negatives")
    scores = hashed_uniform(seed + 1, user[row:row + 1], rank[row:row + 1], len(untouched),
                            np.array([2 ** 62]))[0]
    out[row] = untouched[np.argsort(scores, kind="stable")[:num_negatives]]
  return out


def build_user_examples(timelines: Timelines, params: ExampleParams) -> Examples:
  """All examples of the users in ``timelines`` (see the module docstring for the rules)."""
  n = len(timelines.item)
  user_start = _run_starts(timelines.user)
  earlier = _run_starts(timelines.user, timelines.timestamp)
  histories = []
  for domain in (DOMAIN_A, DOMAIN_B):
    positions = np.flatnonzero(timelines.domain == domain)
    histories.append(last_before(positions, timelines.item[positions], earlier, user_start,
                                 params.history_length))
  rank = np.arange(n) - user_start
  if params.temporal:
    size = _run_sizes(user_start)
    split = (rank >= size - splits.temporal_eval_count(size, params.eval_fraction)
            ).astype(np.int64)
  else:
    split = timelines.fold.astype(np.int64)
  negatives = np.zeros((n, params.num_negatives), dtype=np.int64)
  needs = np.asarray(params.negatives_by_split, dtype=bool)[split]
  if params.num_negatives and needs.any():
    for domain in (DOMAIN_A, DOMAIN_B):
      rows = np.flatnonzero(needs & (timelines.domain == domain))
      if not len(rows):
        continue
      vocab_size = params.item_vocab_sizes[domain]
      in_domain = timelines.domain == domain
      touched_keys = np.unique(timelines.user[in_domain] * vocab_size
                               + timelines.item[in_domain])
      negatives[rows] = sample_negatives(params.seed, timelines.user[rows], rank[rows],
                                         touched_keys, vocab_size, params.num_negatives)
  return Examples(timelines.user.astype(np.int64), timelines.item.astype(np.int64),
                  timelines.domain.astype(np.int64), timelines.label.astype(np.float32),
                  histories[0], histories[1], split, negatives)
