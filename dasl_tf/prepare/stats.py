"""The ``stats.json`` of a prepared dataset: what was read, dropped, and written."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from dasl_tf.features import domain_suffixes
from dasl_tf.prepare.interactions import CleanLog, Interactions
from dasl_tf.prepare.readers import RawLog
from dasl_tf.prepare.side_features import SideFeatures


def domain_counts(raw: RawLog, clean: CleanLog, interactions: Interactions,
                  domain: int) -> Dict[str, object]:
  """What :func:`domain_stats` reports of one domain, counted from the local driver's arrays.

  ``items`` counts the distinct items of the kept records; ``vocabulary_items``
  those in the item vocabulary, built from the records trained on only (an
  item seen only in validation or test is not in it).
  """
  rows = interactions.domain == domain
  return {
      "rows_read": len(raw),
      "records": int(rows.sum()),
      "positives": int(interactions.label[rows].sum()),
      "users": int(len(np.unique(interactions.user[rows]))),
      "items": int(len(np.unique(clean.item))),
      "vocabulary_items": int(interactions.item_vocabs[domain].size - 2),
      "dropped": dict(clean.dropped),
  }


def domain_stats(name: str, source: str, is_label: bool, file_order: bool,
                 counts: Dict[str, object]) -> Dict[str, object]:
  """One domain's entry of ``stats.json``: rows read and kept, users, items, labels, time.

  Args:
    name: the domain's display name.
    source: its input, as given.
    is_label: the input holds 0/1 labels rather than ratings.
    file_order: the input has no time column.
    counts: ``rows_read``, ``records``, ``positives``, ``users``, ``items``,
      ``vocabulary_items`` and ``dropped`` (per reason), as
      :func:`domain_counts` gives them.
  """
  return {
      "name": name,
      "source": source,
      "rows_read": counts["rows_read"],
      "records": counts["records"],
      "users": counts["users"],
      "items": counts["items"],
      "vocabulary_items": counts["vocabulary_items"],
      "positive_rate": counts["positives"] / max(counts["records"], 1),
      "label_source": "label column (0/1)" if is_label else "rating >= threshold",
      "time_source": ("file order: no timestamp column; a user's k-th of n records is at "
                      "(k + 0.5) / n" if file_order else "timestamp column"),
      "dropped": dict(counts["dropped"]),
  }


def train_item_counts(interactions: Interactions, split_names) -> tuple:
  """Per domain, records per item index in the splits trained on, int64 [V].

  In a temporal split that is ``train``; in a k-fold split every fold.
  """
  trained = (interactions.split == split_names.index("train") if "train" in split_names
             else np.ones(len(interactions.split), dtype=bool))
  return tuple(
      np.bincount(interactions.item[trained & (interactions.domain == d)],
                  minlength=interactions.item_vocabs[d].size).astype(np.int64)
      for d in range(len(interactions.item_vocabs)))


def user_keys(num_domains: int) -> Tuple[str, ...]:
  """The user counts of ``stats.json`` (:func:`user_stats`) for K domains."""
  suffixes = domain_suffixes(num_domains)
  return ("users", "overlap_users", *(f"users_only_{s}" for s in suffixes),
          *(f"cold_start_users_{s}" for s in suffixes))


def user_counts(presence: np.ndarray, held_out: np.ndarray) -> Dict[str, int]:
  """The counts of :func:`user_keys` from each user's domains and held-out domain.

  Overlap users are those in two or more domains; ``users_only_<suffix>``
  those in that domain alone; ``cold_start_users_<suffix>`` those whose
  held-out domain it is.

  Args:
    presence: whether each user has records of each domain, bool [U, K].
    held_out: each user's held-out domain (``splits.NO_DOMAIN`` = none), int [U].
  """
  domains = presence.sum(axis=1)
  num_domains = presence.shape[1]
  suffixes = domain_suffixes(num_domains)
  return {"users": int(len(presence)), "overlap_users": int((domains >= 2).sum()),
          **{f"users_only_{s}": int(((domains == 1) & presence[:, d]).sum())
             for d, s in enumerate(suffixes)},
          **{f"cold_start_users_{s}": int((held_out == d).sum()) for d, s in enumerate(suffixes)}}


def user_stats(interactions: Interactions) -> Dict[str, int]:
  """:func:`user_counts` of the merged table's users."""
  starts = interactions.offsets[:-1]
  presence = np.stack([np.add.reduceat((interactions.domain == d).astype(np.int64), starts) > 0
                       for d in range(len(interactions.item_vocabs))], axis=1)
  return user_counts(presence, interactions.held_out[starts])


def split_stats(split: str, time_cuts: Optional[Tuple[int, int]], time_unit: str,
                file_order: bool) -> Dict[str, object]:
  """The split rule, its time cuts (global_time, else None) and the ``timestamp`` unit.

  Args:
    split: the ``--split`` rule.
    time_cuts: ``(validation_cut, test_cut)`` of a global_time split, or None.
    time_unit: the inputs' time unit ("ms", "s"; "" without a time column).
    file_order: the inputs have no time column.

  Returns:
    ``split``, ``validation_cut``, ``test_cut`` and ``timestamp_unit`` (one of
    :data:`dasl_tf.features.TIMESTAMP_UNITS`), as in ``schema.json``.
  """
  unit = "pseudo_time" if file_order else ("milliseconds" if time_unit == "ms" else "seconds")
  validation_cut, test_cut = time_cuts if time_cuts is not None else (None, None)
  return {"split": split, "validation_cut": validation_cut, "test_cut": test_cut,
          "timestamp_unit": unit}


def side_feature_stats(user_features: Optional[SideFeatures],
                       item_features: Optional[SideFeatures]) -> Dict[str, object]:
  """Columns, categorical vocabulary sizes and id coverage of the side features."""
  out = {}
  for key, features, names in (("user", user_features, ("users",)),
                               ("item", item_features, ("items_a", "items_b"))):
    if features is None:
      continue
    out[key] = {"numeric_columns": list(features.numeric_columns),
                "categorical_columns": list(features.categorical_columns),
                "vocab_sizes": list(features.vocab_sizes),
                "coverage": {n: m.coverage for n, m in zip(names, features.matrices)}}
  return out


def warnings_of(users: Dict[str, int], file_order_sources: List[str],
                num_domains: int) -> List[str]:
  """Plain-language warnings a user should read.

  Args:
    users: :func:`user_stats`.
    file_order_sources: the inputs without a time column.
    num_domains: K.
  """
  warnings = []
  domains = "both domains" if num_domains == 2 else "two or more domains"
  if users["overlap_users"] == 0:
    warnings.append(f"no user appears in {domains}: cross-domain signals cannot be learned")
  interleaved = "the two domains are" if num_domains == 2 else "the domains are"
  for source in file_order_sources:
    warnings.append(f"{source}: no timestamp column; each user's records keep their file "
                    f"order and {interleaved} interleaved in proportion (pseudo-time)")
  return warnings
