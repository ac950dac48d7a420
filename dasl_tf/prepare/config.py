"""Configuration of a ``dasl-prepare`` run: one field per command-line flag."""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

from dasl_tf import errors
from dasl_tf.features import MAX_DOMAINS, domain_suffix

FORMATS = ("csv", "tsv", "parquet", "amazon_csv", "amazon_json", "douban", "mat")
SPLITS = ("temporal", "kfold", "global_time")
RUNNERS = ("local", "beam")
NEGATIVE_SAMPLERS = ("uniform", "popularity")
TEMPORAL_SPLITS = ("train", "validation", "test")


class PrepareError(errors.DaslError, ValueError):
  """Bad input or configuration; the message names the file, line or field."""


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  """What to read, how to turn it into examples, and where to write them.

  Attributes:
    format: input format, one of :data:`FORMATS`.
    output_dir: directory to create (written to a temp dir, renamed at the end).
    input_a: file or glob of domain A's log.
    input_b: file or glob of domain B's log.
    inputs: one file or glob per domain, K >= 2 of them (instead of
      ``input_a``/``input_b``, which mean K = 2).
    input: one file holding every domain, split by ``categories`` (or
      ``category_a``/``category_b``).
    category_a: category id (as written in the file) that forms domain A.
    category_b: category id that forms domain B.
    categories: the category id of each domain in ``input``, K >= 2 of them
      (instead of ``category_a``/``category_b``).
    user_column: user id column (csv, tsv, parquet).
    item_column: item id column.
    rating_column: rating column; click = rating >= ``label_threshold``.
    label_column: 0/1 click column, used when the rating column is absent.
    timestamp_column: time column; when absent, file order is the time.
    category_column: category column of a single-file input.
    strip_ids: remove leading and trailing whitespace from user and item
      ids (interaction logs and side-feature tables); without it, such an
      id is an error, since ``'u1 '`` and ``'u1'`` would be two users.
    label_threshold: a rating >= this is a click.
    history_length: T, items per domain history.
    min_item_count: items with fewer records map to the OOV id 1.
    split: "temporal" (per user: the last ``test_fraction`` of the timeline to
      ``test``, the ``validation_fraction`` before it to ``validation``, the
      rest to ``train``), "global_time" (one cut in time for validation and
      one for test, over every record: train on the past, score the future)
      or "kfold" (users in ``folds`` folds).
    validation_fraction: share of each user's examples in the temporal
      validation split (early stopping and best-epoch selection read it);
      with "global_time", the share of all records between the two cuts.
    test_fraction: share of each user's examples in the temporal test split
      (scored once, at the end of training); with "global_time", the share
      of all records at or after the test cut.
    folds: number of folds of the k-fold split.
    cold_start_users: share of the users in two or more domains that get one
      domain held out whole in ``test`` (0 = none; temporal and global_time splits;
      :func:`dasl_tf.prepare.splits.held_out_domains`).
    num_negatives: K sampled negatives per evaluation example (0 = none).
    train_negatives: k sampled negatives per training example (0 = none):
      items of the target's domain the user has not touched up to the
      target's time, for the top-n training objective.
    negative_sampling: distribution of the training negatives, "uniform" or
      "popularity" (``count ** negative_alpha`` over train records).
    negative_alpha: the exponent of popularity sampling.
    seed: seed of negatives, folds and shard shuffling.
    user_features: optional user side-feature table (CSV or Parquet).
    item_features_a: optional side-feature table of domain A's items (two domains only).
    item_features_b: optional side-feature table of domain B's items (two domains only).
    numeric_features: side-feature columns declared numeric (others inferred).
    categorical_features: side-feature columns declared categorical.
    num_shards: TFRecord shards per split.
    compress: write GZIP shards (``.tfrecord.gz``).
    overwrite: replace an existing ``output_dir``.
    domain_names: display names of the K domains; empty: ``A``, ``B``, ``C``, ...
    runner: "local" (in-process, default) or "beam" (Apache Beam pipeline).
    beam_runner: the Beam runner (Beam's own ``--runner`` option) for ``runner="beam"``.
    beam_options: other Beam pipeline options (``--direct_num_workers=2``, ...).
    block_bytes: with the Beam runner, uncompressed text inputs are read in
      blocks of about this many bytes, each by one worker task (Parquet
      inputs by row group; compressed and ``.mat`` files whole).
  """
  format: str = "csv"
  output_dir: str = ""
  input_a: str = ""
  input_b: str = ""
  inputs: Tuple[str, ...] = ()
  input: str = ""
  category_a: str = ""
  category_b: str = ""
  categories: Tuple[str, ...] = ()
  user_column: str = "user_id"
  item_column: str = "item_id"
  rating_column: str = "rating"
  label_column: str = "label"
  timestamp_column: str = "timestamp"
  category_column: str = "category"
  strip_ids: bool = False
  label_threshold: float = 4.0
  history_length: int = 10
  min_item_count: int = 1
  split: str = "temporal"
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  folds: int = 5
  cold_start_users: float = 0.0
  num_negatives: int = 99
  train_negatives: int = 16
  negative_sampling: str = "uniform"
  negative_alpha: float = 0.75
  seed: int = 42
  user_features: str = ""
  item_features_a: str = ""
  item_features_b: str = ""
  numeric_features: Tuple[str, ...] = ()
  categorical_features: Tuple[str, ...] = ()
  num_shards: int = 4
  compress: bool = False
  overwrite: bool = False
  domain_names: Tuple[str, ...] = ()
  runner: str = "local"
  beam_runner: str = "DirectRunner"
  beam_options: Tuple[str, ...] = ()
  block_bytes: int = 64 * 2**20

  def __post_init__(self):
    if self.format not in FORMATS:
      raise PrepareError(f"--format={self.format!r} is not one of {', '.join(FORMATS)}")
    if self.split not in SPLITS:
      raise PrepareError(f"--split={self.split!r} is not one of {', '.join(SPLITS)}")
    if self.negative_sampling not in NEGATIVE_SAMPLERS:
      raise PrepareError(f"--negative_sampling={self.negative_sampling!r} is not one of "
                         f"{', '.join(NEGATIVE_SAMPLERS)}")
    if self.runner not in RUNNERS:
      raise PrepareError(f"--runner={self.runner!r} is not one of {', '.join(RUNNERS)}")
    if not self.output_dir:
      raise PrepareError("--output_dir is required")
    self._check_inputs()
    checks = (("history_length", self.history_length >= 1),
              ("min_item_count", self.min_item_count >= 1),
              ("validation_fraction", 0.0 <= self.validation_fraction < 1.0),
              ("test_fraction", 0.0 < self.test_fraction < 1.0),
              ("folds", self.folds >= 3),
              ("cold_start_users", 0.0 <= self.cold_start_users <= 1.0),
              ("num_negatives", self.num_negatives >= 0),
              ("train_negatives", self.train_negatives >= 0),
              ("negative_alpha", 0.0 <= self.negative_alpha <= 2.0),
              ("num_shards", self.num_shards >= 1),
              ("block_bytes", self.block_bytes >= 1),
              ("label_threshold", math.isfinite(self.label_threshold)))
    for name, ok in checks:
      if not ok:
        raise PrepareError(f"--{name}={getattr(self, name)!r} is out of range")
    if self.split != "kfold" and self.validation_fraction + self.test_fraction >= 1.0:
      raise PrepareError(f"--validation_fraction + --test_fraction = "
                         f"{self.validation_fraction + self.test_fraction} leaves nothing "
                         "to train on")
    if self.split == "kfold" and self.cold_start_users > 0:
      raise PrepareError(f"--cold_start_users={self.cold_start_users!r} needs --split temporal "
                         "or global_time: a k-fold split has no test split to hold a "
                         "domain out in")
    if not self.domain_names:
      # Frozen: the default names are set once, here.
      object.__setattr__(self, "domain_names", tuple(
          domain_suffix(d).upper() for d in range(self.num_domains)))
    if len(self.domain_names) != self.num_domains:
      raise PrepareError(f"--domain_names needs {self.num_domains} names, one per domain, got "
                         f"{len(self.domain_names)}: {','.join(self.domain_names)}")
    if self.num_domains > 2 and (self.item_features_a or self.item_features_b):
      raise PrepareError(f"--item_features_a/--item_features_b are for two domains; with "
                         f"{self.num_domains} domains give no item side features")
    if self.runner == "beam" and "://" in self.output_dir:
      raise PrepareError(f"--output_dir={self.output_dir}: the Beam runner writes local "
                         "directories only; use --runner local for a remote --output_dir")
    both = set(self.numeric_features) & set(self.categorical_features)
    if both:
      raise PrepareError(f"side-feature columns {sorted(both)} are declared both numeric and "
                         "categorical")

  def _check_inputs(self) -> None:
    """Checks the input flags: K >= 2 domains, from per-domain files or one file's categories."""
    if self.inputs and (self.input_a or self.input_b):
      raise PrepareError("give either --inputs or --input_a and --input_b, not both")
    if self.categories and (self.category_a or self.category_b):
      raise PrepareError("give either --categories or --category_a and --category_b, not both")
    if self.input:
      if self.inputs or self.input_a or self.input_b:
        raise PrepareError("give either --input (with --categories or --category_a/"
                           "--category_b) or per-domain inputs (--inputs, or --input_a and "
                           "--input_b), not both")
      if not (self.categories or (self.category_a and self.category_b)):
        raise PrepareError("--input needs --categories (or --category_a and --category_b) to "
                           "choose the domains")
      if self.format in ("amazon_csv", "amazon_json", "douban"):
        raise PrepareError(f"--format={self.format} has no category column; give "
                           "--inputs (or --input_a and --input_b)")
      if self.category_a and self.category_a == self.category_b:
        raise PrepareError(f"--category_a and --category_b are both {self.category_a!r}")
      repeated = sorted({c for c in self.categories if self.categories.count(c) > 1})
      if repeated:
        raise PrepareError(f"--categories names {', '.join(repeated)} more than once: each "
                           "domain needs a category of its own")
    else:
      if self.categories:
        raise PrepareError("--categories chooses the domains of one --input file; give --input")
      if not (self.inputs or (self.input_a and self.input_b)):
        raise PrepareError("--input_a and --input_b (or --inputs) are required (or --input "
                           "with categories)")
      if self.format == "mat":
        raise PrepareError("--format=mat reads one file: use --input with --categories (or "
                           "--category_a/--category_b)")
      if not all(self.domain_inputs):
        raise PrepareError(f"--inputs has an empty entry: {','.join(self.inputs)}")
    if self.num_domains < 2:
      flag = "--categories" if self.input else "--inputs"
      raise PrepareError(f"{flag} needs at least two domains, got {self.num_domains}")
    if self.num_domains > MAX_DOMAINS:
      raise PrepareError(f"{self.num_domains} domains; dasl-prepare takes at most {MAX_DOMAINS}")

  @property
  def domain_inputs(self) -> Tuple[str, ...]:
    """The file or glob of each domain (``--inputs``, or ``--input_a``, ``--input_b``); () with ``--input``."""
    if self.input:
      return ()
    return self.inputs or (self.input_a, self.input_b)

  @property
  def domain_categories(self) -> Tuple[str, ...]:
    """The category id of each domain in ``--input`` (``--categories``, or ``--category_a``, ``--category_b``)."""
    if not self.input:
      return ()
    return self.categories or (self.category_a, self.category_b)

  @property
  def num_domains(self) -> int:
    """K, the number of domains."""
    return len(self.domain_categories if self.input else self.domain_inputs)

  @property
  def split_names(self) -> Tuple[str, ...]:
    """Names of the output splits, in order."""
    if self.split != "kfold":
      return TEMPORAL_SPLITS
    return tuple(f"fold-{k}" for k in range(self.folds))

  def carries_negatives(self, split_name: str) -> bool:
    """Whether examples of a split carry evaluation negatives (HR@K)."""
    return self.num_negatives > 0 and split_name != "train"

  def carries_train_negatives(self, split_name: str) -> bool:
    """Whether examples of a split carry training negatives (splits trained on).

    Every fold of a k-fold dataset is trained on in the other folds' runs.
    """
    return self.train_negatives > 0 and split_name not in ("validation", "test")
