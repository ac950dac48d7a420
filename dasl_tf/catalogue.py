"""The full catalogue of each domain, and what each user touched there before the evaluated split.

The full-catalogue metrics of :mod:`dasl_tf.metrics` (``hr10_full_*``) rank a
target against every item of its domain the user has not touched;
:class:`FullCatalogue` holds the catalogues and the touched (user, item) pairs
of the earlier splits, read in one pass over their examples.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from absl import logging
import numpy as np

from dasl_tf import data as data_lib
from dasl_tf import features as F

# Pending (user, item) keys of one domain merged into the sorted set past this many.
_MERGE_KEYS = 1 << 22


class FullCatalogue:
  """Each domain's catalogue and the items each user touched there in the earlier splits.

  The earlier splits are those before the evaluated one: training and
  validation for the test split, training for the validation split.

  Args:
    num_items: item vocabulary sizes of the K domains (A, B, ...), reserved ids
      included; domain D's catalogue is the ids ``2 .. num_items[D] - 1``.
    touched: per domain, the sorted unique int64 keys ``user * num_items[D] + item``
      of the (user, item) pairs of that domain in the earlier splits' examples
      (targets and histories).
    users: per domain, the sorted unique ids of users with an example in it in
      the earlier splits.
  """

  def __init__(self, num_items: Sequence[int], touched: Sequence[np.ndarray],
               users: Sequence[np.ndarray]):
    self.num_items = tuple(int(n) for n in num_items)
    self.touched = tuple(touched)
    self.users = tuple(users)

  @classmethod
  def from_batches(cls, batches: Iterable[Mapping[str, np.ndarray]],
                   num_items: Sequence[int]) -> "FullCatalogue":
    """One pass over batches of examples (``user_id``, ``item_id``, ``domain``, histories).

    Raises:
      ValueError: an item id is outside its domain's vocabulary (the feature is named).
    """
    domains = range(len(num_items))
    pending = {d: [] for d in domains}
    touched = {d: np.zeros(0, np.int64) for d in domains}
    users = {d: [] for d in domains}
    for batch in batches:
      user, item, domain = (np.asarray(batch[name], np.int64)
                            for name in (F.USER_ID, F.ITEM_ID, F.DOMAIN))
      for d in domains:
        hist_name = F.history_key(d)
        size = num_items[d]
        in_d = domain == d
        history = np.asarray(batch[hist_name], np.int64)
        for name, values in ((F.ITEM_ID, item[in_d]), (hist_name, history)):
          if values.size and values.max() >= size:
            raise ValueError(f"{name} holds item id {values.max()}, outside domain "
                             f"{F.domain_suffix(d)}'s vocabulary of {size} ids: the examples "
                             "and schema.json disagree")
        pair_users = np.concatenate([user[in_d], np.repeat(user, history.shape[1])])
        pair_items = np.concatenate([item[in_d], history.reshape(-1)])
        known = pair_items >= F.NUM_RESERVED_IDS
        pending[d].append(np.unique(pair_users[known] * size + pair_items[known]))
        users[d].append(np.unique(user[in_d]))
        if sum(p.size for p in pending[d]) > _MERGE_KEYS:
          touched[d] = np.unique(np.concatenate([touched[d]] + pending[d]))
          pending[d] = []
    return cls(num_items,
               [np.unique(np.concatenate([touched[d]] + pending[d])) for d in domains],
               [np.unique(np.concatenate(users[d] or [np.zeros(0, np.int64)]))
                for d in domains])

  @classmethod
  def from_files(cls, files: Sequence[str], spec: F.FeatureSpec,
                 num_items: Sequence[int]) -> "FullCatalogue":
    """One pass over TFRecord shards (the earlier splits).

    Raises:
      ValueError: an item id is outside its domain's vocabulary.
    """
    columns = (F.USER_ID, F.ITEM_ID, F.DOMAIN,
               *F.history_keys(spec.num_domains))
    return cls.from_columns(data_lib.SplitColumns.read(files, spec, columns), num_items)

  @classmethod
  def from_columns(cls, columns: data_lib.SplitColumns,
                   num_items: Sequence[int]) -> "FullCatalogue":
    """The catalogue of a split's columns (``user_id``, ``item_id``, ``domain``, histories)."""
    catalogue = cls.from_batches(columns.batches(), num_items)
    logging.info("full catalogue: %s touched (user, item) pairs per domain",
                 [keys.size for keys in catalogue.touched])
    return catalogue

  def union(self, other: "FullCatalogue") -> "FullCatalogue":
    """What either catalogue's users touched (the same vocabularies)."""
    if other.num_items != self.num_items:
      raise ValueError(f"catalogues of vocabulary sizes {self.num_items} and {other.num_items}")
    return FullCatalogue(self.num_items,
                         [np.union1d(a, b) for a, b in zip(self.touched, other.touched)],
                         [np.union1d(a, b) for a, b in zip(self.users, other.users)])

  def touched_items(self, domain: int, user: int) -> np.ndarray:
    """The sorted items of ``domain`` that ``user`` touched in the earlier splits."""
    size = self.num_items[domain]
    keys = self.touched[domain]
    lo, hi = np.searchsorted(keys, [user * size, (user + 1) * size])
    return keys[lo:hi] - user * size

  def cold_start_users(self, domains: np.ndarray, users: np.ndarray) -> np.ndarray:
    """bool ``[N]``: user ``users[n]`` has no example of the earlier splits in ``domains[n]``."""
    known = np.zeros(len(users), bool)
    for d in range(len(self.num_items)):
      rows = domains == d
      position = np.searchsorted(self.users[d], users[rows])
      found = position < self.users[d].size
      found[found] = self.users[d][position[found]] == users[rows][found]
      known[rows] = found
    return ~known

  def excluded(self, domain: int, users: np.ndarray, histories: np.ndarray,
               targets: np.ndarray, width: int) -> np.ndarray:
    """Which catalogue items are not ranked against each target.

    Args:
      domain: the targets' domain.
      users: ``[N]`` user ids.
      histories: ``[N, T]`` each example's own-domain history.
      targets: ``[N]`` in-vocabulary target items.
      width: columns of the result (at least the catalogue's size).

    Returns:
      bool ``[N, width]``; column j is item ``2 + j``; true for the user's
      touched items, the example's history, the target itself (ranked
      separately) and the columns past the vocabulary.
    """
    excluded = np.zeros((len(users), width), bool)
    excluded[:, self.num_items[domain] - F.NUM_RESERVED_IDS:] = True
    for row, user in enumerate(users):
      excluded[row, self.touched_items(domain, int(user)) - F.NUM_RESERVED_IDS] = True
    rows, columns = np.nonzero(histories >= F.NUM_RESERVED_IDS)
    excluded[rows, histories[rows, columns] - F.NUM_RESERVED_IDS] = True
    excluded[np.arange(len(users)), targets - F.NUM_RESERVED_IDS] = True
    return excluded
