"""Split rules: temporal per user, one global time cut, or k folds of users; cold-start users.

Every rule assigns a split index to every record of the merged, per-user
chronological table (one record is one example), before any vocabulary is
built, so that vocabularies and item statistics come from the training
records alone. Both drivers call these functions, the local one over the
whole table, the Beam one per user (the global cuts come as a side input).

* ``temporal``: per user, the last ``test_fraction`` of the timeline is
  ``test``, the ``validation_fraction`` before it ``validation``
  (:func:`temporal_counts`).
* ``global_time``: one cut in time for validation and one for test over every
  record of every domain (:func:`time_cuts`): train on the past, score the
  future, as a batch job that is retrained and then serves does.
* ``kfold``: users dealt into folds (:func:`user_folds`).

Cold-start users (:func:`held_out_domains`, temporal and global_time rules):
a seeded share of the users with records in two or more domains each get one
of those domains held out. *All* of that user's records of the held-out domain go to
``test``; the user's records of the other domain keep the split the rule
gives them. In the user's other-domain examples (train, validation and
test), the held-out domain's history is empty, so no model sees those items
before test; the held-out test examples keep their own-domain history of the
user's earlier held-out records (an online system knows a user's recent
activity in the domain it serves) and their other-domain history.

Every split must end up with examples (:func:`check_split_sizes`): an empty
train, validation or test split is an error naming the cause; a split empty
in one domain only is a warning. A validation split that
``validation_fraction=0`` asks to be empty is neither.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dasl_tf.features import domain_suffix
from dasl_tf.prepare.config import PrepareConfig, PrepareError
from dasl_tf.prepare.examples import count_keys, hashed_uniform

TRAIN, VALIDATION, TEST = 0, 1, 2
# The held-out domain of a user who has none.
NO_DOMAIN = -1
# Offset of the cold-start draws' seed, so they are independent of the negatives'.
_COLD_START_STREAM = 2 ** 33
_UNIT = 2 ** 53


def temporal_counts(num_examples: np.ndarray, validation_fraction: float,
                    test_fraction: float) -> tuple:
  """Examples at the end of a user's timeline that go to validation and test (elementwise).

  A user with n examples gives ``round(n * test_fraction)`` of them (at least 1,
  at most n - 1; none when n < 2) to test, then ``round(n * validation_fraction)``
  of the rest (at least 1 when the fraction is positive, at most ``rest - 1``;
  none when fewer than 2 remain) to validation. Every user keeps at least one
  training example.

  Args:
    num_examples: n per user, int array.
    validation_fraction: share of the timeline before the test part.
    test_fraction: share of the timeline at its end.

  Returns:
    ``(validation, test)`` int64 arrays of the shape of ``num_examples``.
  """
  n = np.asarray(num_examples, dtype=np.int64)
  test = np.where(n < 2, 0, np.clip(np.round(n * test_fraction), 1, np.maximum(n - 1, 1)))
  rest = n - test
  validation = np.clip(np.round(n * validation_fraction), 1, np.maximum(rest - 1, 1))
  validation = np.where((rest < 2) | (validation_fraction <= 0), 0, validation)
  return validation.astype(np.int64), test.astype(np.int64)


def temporal_split(offsets: np.ndarray, validation_fraction: float,
                   test_fraction: float) -> np.ndarray:
  """The split of every record of a per-user table sorted by time.

  Args:
    offsets: start row of each user plus the number of rows, int [U + 1].
    validation_fraction: see :func:`temporal_counts`.
    test_fraction: see :func:`temporal_counts`.

  Returns:
    int64 [N]: :data:`TRAIN`, :data:`VALIDATION` or :data:`TEST` per record.
  """
  sizes = np.diff(offsets)
  validation, test = temporal_counts(sizes, validation_fraction, test_fraction)
  rank = np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes)
  from_end = np.repeat(sizes, sizes) - rank
  return np.where(from_end <= np.repeat(test, sizes), TEST,
                  np.where(from_end <= np.repeat(test + validation, sizes), VALIDATION,
                           TRAIN)).astype(np.int64)


def time_cuts(times: np.ndarray, counts: np.ndarray, validation_fraction: float,
              test_fraction: float) -> Tuple[int, int]:
  """The validation and test cuts of the global time split, from a histogram of times.

  Over the N record times in order, ``t_(0) <= ... <= t_(N-1)``, the cut at
  share q is ``t_(ceil(q * (N - 1)))`` (NumPy's ``quantile(..., method="higher")``):
  the test cut at q = 1 - test_fraction, the validation cut at
  q = 1 - test_fraction - validation_fraction. Computed from the histogram of
  distinct times, so the drivers' cuts are equal exactly.

  Args:
    times: distinct record times, sorted, int64 [D].
    counts: records per time, int64 [D] (N = their sum >= 1).
    validation_fraction: the share of records between the cuts.
    test_fraction: the share of records at or after the test cut.

  Returns:
    ``(validation_cut, test_cut)``, times of ``times``.
  """
  cumulative = np.cumsum(counts)

  def cut(share: float) -> int:
    rank = int(np.ceil(share * (cumulative[-1] - 1)))
    return int(times[np.searchsorted(cumulative, rank, side="right")])

  return cut(1 - test_fraction - validation_fraction), cut(1 - test_fraction)


def global_split(times: np.ndarray, validation_cut: int, test_cut: int) -> np.ndarray:
  """The split of each record time: ``test`` from ``test_cut``, ``validation`` from the other cut.

  A time equal to a cut goes to the later split, so no training or
  validation record is at or after a test record's time.

  Returns:
    int64 [N].
  """
  return np.where(times >= test_cut, TEST,
                  np.where(times >= validation_cut, VALIDATION, TRAIN)).astype(np.int64)


def user_keys(user_ids: Sequence[str]) -> np.ndarray:
  """A 64-bit hash of each raw user id (BLAKE2b of its UTF-8), uint64 [U].

  It depends on the id alone: not on file order, the other users, or the driver.
  """
  return np.array([int.from_bytes(hashlib.blake2b(str(u).encode("utf-8"), digest_size=8)
                                  .digest(), "little") for u in user_ids], dtype=np.uint64)


def held_out_domains(user_ids: Sequence[str], in_a: np.ndarray, in_b: np.ndarray,
                     fraction: float, seed: int, in_more: Sequence[np.ndarray] = ()
                    ) -> np.ndarray:
  """The domain held out for each cold-start user (see the module docstring).

  Each user with records in two or more domains is chosen when the first
  draw of a counter-based hash of ``(seed, user id)`` falls below
  ``fraction`` (so about that share of them is chosen); the second draw,
  modulo the number m of the user's domains, picks the held-out one among
  them (in domain order), each with chance 1/m. With two domains that is A or
  B, half each.

  Args:
    user_ids: raw user ids, str [U].
    in_a: whether each user has domain-A records, bool [U].
    in_b: whether each user has domain-B records, bool [U].
    fraction: the share of the users in two or more domains to choose (0 = none).
    seed: the run's seed.
    in_more: whether each user has records of domain C, D, ..., bool [U] each.

  Returns:
    int64 [U]: the held-out domain index, or :data:`NO_DOMAIN`.
  """
  held_out = np.full(len(user_ids), NO_DOMAIN, np.int64)
  if fraction <= 0 or not len(user_ids):
    return held_out
  n = len(user_ids)
  present = np.stack([in_a, in_b, *in_more]).astype(bool).T
  domains = present.sum(axis=1)
  draws = hashed_uniform(seed + _COLD_START_STREAM, user_keys(user_ids),
                         np.zeros(n, np.int64), 2, np.full(n, _UNIT))
  chosen = (domains >= 2) & (draws[:, 0] < fraction * _UNIT)
  pick = draws[chosen, 1] % domains[chosen]
  # The pick-th (0-based) of the user's domains: the first d where the running count passes it.
  held_out[chosen] = np.argmax(np.cumsum(present[chosen], axis=1) > pick[:, None], axis=1)
  return held_out


def record_splits(rule: str, offsets: np.ndarray, times: np.ndarray, domain: np.ndarray,
                  held_out: np.ndarray, validation_fraction: float, test_fraction: float,
                  cuts: Optional[Tuple[int, int]] = None) -> np.ndarray:
  """The split of every record under the temporal or global_time rule, cold-start users included.

  Args:
    rule: "temporal" or "global_time".
    offsets: start row of each user plus the number of rows, int [U + 1].
    times: record times (the ``timestamp`` feature's), int64 [N].
    domain: int64 [N].
    held_out: the held-out domain of each record's user, int64 [N]
      (:data:`NO_DOMAIN` for none): those records go to ``test``, the
      user's other records keep the rule's split.
    validation_fraction: see :func:`temporal_counts`.
    test_fraction: see :func:`temporal_counts`.
    cuts: ``(validation_cut, test_cut)`` of :func:`time_cuts` (global_time).

  Returns:
    int64 [N].
  """
  if rule == "global_time":
    split = global_split(times, *cuts)
  else:
    split = temporal_split(offsets, validation_fraction, test_fraction)
  return np.where(domain == held_out, TEST, split).astype(np.int64)


def user_folds(num_users: int, folds: int, seed: int) -> np.ndarray:
  """A fold per user index (balanced, seeded), int64 [num_users]."""
  order = np.random.default_rng((seed, 3)).permutation(num_users)
  fold = np.empty(num_users, dtype=np.int64)
  fold[order] = np.arange(num_users) % folds
  return fold


def _domain_count_keys(num_domains: int) -> Tuple[str, ...]:
  """The keys of a split's per-domain example counts: ``domain_a``, ``domain_b``, ..."""
  return count_keys(num_domains)[2:]  # after "examples" and "positives"


def domain_counts(split: np.ndarray, domain: np.ndarray, split_names: Sequence[str],
                  num_domains: int) -> Dict[str, Dict[str, int]]:
  """Records (one record is one example) per split and domain, keyed as the drivers count them.

  Args:
    split: the split index of every record, int [N].
    domain: the domain of every record, int [N].
    split_names: the splits, in index order.
    num_domains: K.
  """
  return {name: {key: int(((split == k) & (domain == d)).sum())
                 for d, key in enumerate(_domain_count_keys(num_domains))}
          for k, name in enumerate(split_names)}


def check_split_sizes(counts: Mapping[str, Mapping[str, int]], config: PrepareConfig,
                      num_users: int, cuts: Optional[Tuple[int, int]]) -> List[str]:
  """Refuses a split without examples; warns of one without examples of one domain.

  Args:
    counts: per split name, its examples of each domain (``domain_a``,
      ``domain_b``, ...), as :func:`domain_counts` or a driver's counts give them.
    config: the run's configuration (split rule, fractions, folds, domain names).
    num_users: the users of every domain.
    cuts: ``(validation_cut, test_cut)`` of a global_time split, else None.

  Returns:
    One warning per split that lacks one domain's examples only.

  Raises:
    PrepareError: a split has no example of either domain (the message says
      which and why). An empty validation split is allowed when
      ``validation_fraction`` is 0.
  """
  warnings = []
  for name in config.split_names:
    if name == "validation" and config.validation_fraction <= 0:
      continue
    per_domain = [int(counts.get(name, {}).get(key, 0))
                  for key in _domain_count_keys(config.num_domains)]
    if not any(per_domain):
      raise PrepareError(f"the {name} split is empty: {_why_empty(name, config, num_users, cuts)}")
    present = [domain_suffix(d).upper() for d, count in enumerate(per_domain) if count]
    for d, count in enumerate(per_domain):
      if not count:
        warnings.append(f"the {name} split has no example of domain {domain_suffix(d).upper()} "
                        f"({config.domain_names[d]}); every example in it is of domain"
                        f"{'s' if len(present) > 1 else ''} {', '.join(present)}")
  return warnings


def _why_empty(name: str, config: PrepareConfig, num_users: int,
               cuts: Optional[Tuple[int, int]]) -> str:
  """Why the split rule left the split ``name`` without a record."""
  if config.split == "kfold":
    return (f"no user was dealt into it ({num_users} user(s) over --folds={config.folds}); "
            "use fewer folds or more users")
  if name == "train":
    return "every record falls in validation or test"
  if config.split == "global_time":
    return (f"the validation and test cuts are the same time ({cuts[1]}): the log has too "
            f"few distinct times for --validation_fraction={config.validation_fraction} and "
            f"--test_fraction={config.test_fraction}")
  needed = 2 if name == "test" else 3
  held = " (outside a domain held out for cold start)" if config.cold_start_users > 0 else ""
  domains = "both domains" if config.num_domains == 2 else f"all {config.num_domains} domains"
  return (f"every user has fewer than {needed} interactions over {domains}{held}; the "
          "temporal split needs at least 3 per user to fill train/validation/test")
