"""The ``stats.json`` of a prepared dataset: what was read, dropped, and written."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from dasl_tf.features import DOMAIN_A, DOMAIN_B
from dasl_tf.prepare.interactions import CleanLog, Interactions
from dasl_tf.prepare.readers import RawLog
from dasl_tf.prepare.side_features import SideFeatures


def domain_stats(name: str, raw: RawLog, clean: CleanLog, interactions: Interactions,
                 domain: int) -> Dict[str, object]:
  """Counts of one domain: rows read and kept, users, items, positive rate, time source.

  ``items`` counts the distinct items of the kept records; ``vocabulary_items``
  those in the item vocabulary, built from the records trained on only (an
  item seen only in validation or test is not in it).
  """
  rows = interactions.domain == domain
  return {
      "name": name,
      "source": raw.source,
      "rows_read": len(raw),
      "records": int(rows.sum()),
      "users": int(len(np.unique(interactions.user[rows]))),
      "items": int(len(np.unique(clean.item))),
      "vocabulary_items": int(interactions.item_vocabs[domain].size - 2),
      "positive_rate": float(interactions.label[rows].mean()),
      "label_source": "label column (0/1)" if raw.is_label else "rating >= threshold",
      "time_source": ("file order: no timestamp column; a user's k-th of n records is at "
                      "(k + 0.5) / n" if raw.file_order else "timestamp column"),
      "dropped": dict(clean.dropped),
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
      for d in (DOMAIN_A, DOMAIN_B))


def user_stats(interactions: Interactions) -> Dict[str, int]:
  """Users in A only, in B only, and in both (overlap)."""
  starts = interactions.offsets[:-1]
  in_a = np.add.reduceat((interactions.domain == DOMAIN_A).astype(np.int64), starts) > 0
  in_b = np.add.reduceat((interactions.domain == DOMAIN_B).astype(np.int64), starts) > 0
  return {"users": int(len(starts)), "overlap_users": int((in_a & in_b).sum()),
          "users_only_a": int((in_a & ~in_b).sum()), "users_only_b": int((~in_a & in_b).sum())}


def side_feature_stats(user_features: Optional[SideFeatures],
                       item_features: Optional[SideFeatures]) -> Dict[str, object]:
  out = {}
  for key, features, names in (("user", user_features, ("users",)),
                               ("item", item_features, ("items_a", "items_b"))):
    if features is None:
      continue
    out[key] = {"numeric_columns": list(features.numeric_columns),
                "categorical_columns": list(features.categorical_columns),
                "coverage": {n: m.coverage for n, m in zip(names, features.matrices)}}
  return out


def warnings_of(users: Dict[str, int], raws: List[RawLog]) -> List[str]:
  """Plain-language warnings a user should read."""
  warnings = []
  if users["overlap_users"] == 0:
    warnings.append("no user appears in both domains: cross-domain signals cannot be learned")
  for raw in raws:
    if raw.file_order:
      warnings.append(f"{raw.source}: no timestamp column; each user's records keep their file "
                      "order and the two domains are interleaved in proportion (pseudo-time)")
  return warnings
