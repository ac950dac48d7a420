"""Configuration of a ``dasl-prepare`` run: one field per command-line flag."""
from __future__ import annotations

import dataclasses
from typing import Tuple

FORMATS = ("csv", "tsv", "parquet", "amazon_csv", "amazon_json", "douban", "mat")
SPLITS = ("temporal", "kfold")
RUNNERS = ("local", "beam")


class PrepareError(ValueError):
  """Bad input or configuration; the message names the file, line or field."""


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  """What to read, how to turn it into examples, and where to write them.

  Attributes:
    format: input format, one of :data:`FORMATS`.
    output_dir: directory to create (written to a temp dir, renamed at the end).
    input_a: file or glob of domain A's log.
    input_b: file or glob of domain B's log.
    input: one file holding both domains, split by ``category_a``/``category_b``.
    category_a: category id (as written in the file) that forms domain A.
    category_b: category id that forms domain B.
    user_column: user id column (csv, tsv, parquet).
    item_column: item id column.
    rating_column: rating column; click = rating >= ``label_threshold``.
    label_column: 0/1 click column, used when the rating column is absent.
    timestamp_column: time column; when absent, file order is the time.
    category_column: category column of a single-file input.
    label_threshold: a rating >= this is a click.
    history_length: T, items per domain history.
    min_item_count: items with fewer records map to the OOV id 1.
    split: "temporal" (last ``eval_fraction`` of each user's timeline) or
      "kfold" (users in ``folds`` folds).
    eval_fraction: share of each user's examples in the temporal eval split.
    folds: number of folds of the k-fold split.
    num_negatives: K sampled negatives per evaluation example (0 = none).
    seed: seed of negatives, folds and shard shuffling.
    user_features: optional user side-feature table (CSV or Parquet).
    item_features_a: optional side-feature table of domain A's items.
    item_features_b: optional side-feature table of domain B's items.
    numeric_features: side-feature columns declared numeric (others inferred).
    categorical_features: side-feature columns declared categorical.
    num_shards: TFRecord shards per split.
    compress: write GZIP shards (``.tfrecord.gz``).
    overwrite: replace an existing ``output_dir``.
    domain_names: display names of domains A and B.
    runner: "local" (in-process, default) or "beam" (Apache Beam pipeline).
    beam_runner: the Beam runner (Beam's own ``--runner`` option) for ``runner="beam"``.
    beam_options: other Beam pipeline options (``--direct_num_workers=2``, ...).
  """
  format: str = "csv"
  output_dir: str = ""
  input_a: str = ""
  input_b: str = ""
  input: str = ""
  category_a: str = ""
  category_b: str = ""
  user_column: str = "user_id"
  item_column: str = "item_id"
  rating_column: str = "rating"
  label_column: str = "label"
  timestamp_column: str = "timestamp"
  category_column: str = "category"
  label_threshold: float = 4.0
  history_length: int = 10
  min_item_count: int = 1
  split: str = "temporal"
  eval_fraction: float = 0.2
  folds: int = 5
  num_negatives: int = 99
  seed: int = 42
  user_features: str = ""
  item_features_a: str = ""
  item_features_b: str = ""
  numeric_features: Tuple[str, ...] = ()
  categorical_features: Tuple[str, ...] = ()
  num_shards: int = 4
  compress: bool = False
  overwrite: bool = False
  domain_names: Tuple[str, str] = ("A", "B")
  runner: str = "local"
  beam_runner: str = "DirectRunner"
  beam_options: Tuple[str, ...] = ()

  def __post_init__(self):
    if self.format not in FORMATS:
      raise PrepareError(f"--format={self.format!r} is not one of {', '.join(FORMATS)}")
    if self.split not in SPLITS:
      raise PrepareError(f"--split={self.split!r} is not one of {', '.join(SPLITS)}")
    if self.runner not in RUNNERS:
      raise PrepareError(f"--runner={self.runner!r} is not one of {', '.join(RUNNERS)}")
    if not self.output_dir:
      raise PrepareError("--output_dir is required")
    if self.input:
      if self.input_a or self.input_b:
        raise PrepareError("give either --input (with --category_a/--category_b) or "
                           "--input_a and --input_b, not both")
      if not (self.category_a and self.category_b):
        raise PrepareError("--input needs --category_a and --category_b to choose the domains")
      if self.category_a == self.category_b:
        raise PrepareError(f"--category_a and --category_b are both {self.category_a!r}")
    elif not (self.input_a and self.input_b):
      raise PrepareError("--input_a and --input_b are required (or --input with categories)")
    elif self.format == "mat":
      raise PrepareError("--format=mat reads one file: use --input with --category_a/--category_b")
    checks = (("history_length", self.history_length >= 1),
              ("min_item_count", self.min_item_count >= 1),
              ("eval_fraction", 0.0 < self.eval_fraction < 1.0),
              ("folds", self.folds >= 2),
              ("num_negatives", self.num_negatives >= 0),
              ("num_shards", self.num_shards >= 1))
    for name, ok in checks:
      if not ok:
        raise PrepareError(f"--{name}={getattr(self, name)!r} is out of range")
    if len(self.domain_names) != 2:
      raise PrepareError(f"--domain_names needs two names, got {self.domain_names!r}")
    both = set(self.numeric_features) & set(self.categorical_features)
    if both:
      raise PrepareError(f"side-feature columns {sorted(both)} are declared both numeric and "
                         "categorical")

  @property
  def split_names(self) -> Tuple[str, ...]:
    """Names of the output splits, in order."""
    if self.split == "temporal":
      return ("train", "eval")
    return tuple(f"fold-{k}" for k in range(self.folds))

  def carries_negatives(self, split_name: str) -> bool:
    """Whether examples of a split carry sampled negatives (evaluation splits)."""
    return self.num_negatives > 0 and split_name != "train"
