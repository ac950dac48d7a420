"""``prepare(config)``: raw logs -> TFRecord splits, schema, vocabularies and stats.

Steps: read the K domains -> clean (drop and count) -> vocabularies and the
merged per-user table -> side features -> per-user examples -> shards and
``vocab/``. The local driver runs them in this process; the Beam driver
(:mod:`dasl_tf.prepare.beam_pipeline`) runs every one in Beam's workers. Both
return a :class:`DriverResult` (counts and sizes, none of the data), from which
``schema.json``, ``stats.json`` and the same facts as TensorFlow Metadata protos
(``schema.pbtxt``, ``stats.pb``) are written, all in a staging directory
renamed to ``output_dir`` at the end.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from absl import logging

from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf.prepare import interactions as interactions_lib
from dasl_tf.prepare import local
from dasl_tf.prepare import readers
from dasl_tf.prepare import side_features
from dasl_tf.prepare import splits as splits_lib
from dasl_tf.prepare import stats as stats_lib
from dasl_tf.prepare import tfmd
from dasl_tf.prepare import vocab as vocab_lib
from dasl_tf.prepare import writer as writer_lib
from dasl_tf.prepare.config import PrepareConfig
from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import ExampleParams
from dasl_tf.prepare.side_features import SideFeatures

STATS_FILE = "stats.json"
VOCAB_DIR = "vocab"


@dataclasses.dataclass
class DriverResult:
  """What a driver reports of its run: counts and sizes for the metadata, none of the data.

  Attributes:
    splits: per split, the counts of :func:`dasl_tf.prepare.examples.count_keys`.
    domains: per domain, the counts of :func:`stats_lib.domain_counts`.
    users: :func:`stats_lib.user_stats`.
    num_users: size of the user vocabulary (reserved ids included).
    num_items: the size of each domain's item vocabulary.
    side_features: :func:`stats_lib.side_feature_stats`.
    sources: the input of each domain, for messages.
    is_label: per domain, the input holds 0/1 labels rather than ratings.
    file_order: the inputs have no time column.
    time_unit: the inputs' time unit, "ms" or "s" ("" without a time column).
    time_cuts: ``(validation_cut, test_cut)`` of a global_time split, else None.
  """
  splits: Dict[str, Dict[str, int]]
  domains: Tuple[Dict[str, object], ...]
  users: Dict[str, int]
  num_users: int
  num_items: Tuple[int, ...]
  side_features: Dict[str, object]
  sources: Tuple[str, ...]
  is_label: Tuple[bool, ...]
  file_order: bool
  time_unit: str
  time_cuts: Optional[Tuple[int, int]]


def prepare(config: PrepareConfig) -> Dict[str, object]:
  """Runs the whole preparation; returns the stats also written to ``stats.json``.

  Raises:
    PrepareError: bad input or configuration (the message names the file,
      line or field), or a split without examples
      (:func:`splits_lib.check_split_sizes`: the local driver checks before
      writing, the Beam driver's counts before publishing); nothing is left
      at ``config.output_dir``.
  """
  start = time.time()
  filesystems.register(config.output_dir, *config.domain_inputs, config.input,
                       config.user_features, config.item_features_a, config.item_features_b)
  if config.runner == "beam":
    from dasl_tf.prepare import beam_pipeline  # pylint: disable=g-import-not-at-top
    run = functools.partial(beam_pipeline.run, config)
  else:
    run = _local_driver(config)
  with writer_lib.staging_dir(config.output_dir, config.overwrite) as staging:
    result = run(staging)
    split_warnings = splits_lib.check_split_sizes(result.splits, config, result.users["users"],
                                                  result.time_cuts)
    schema = _schema(config, result)
    schema.save(staging)
    tfmd.write(staging, schema, result.splits)
    warnings = stats_lib.warnings_of(
        result.users, [source for source in result.sources if result.file_order],
        config.num_domains)
    warnings += split_warnings
    for warning in warnings:
      logging.warning("%s", warning)
    stats = {
        "config": dataclasses.asdict(config),
        "domains": {
            F.domain_suffix(d).upper(): stats_lib.domain_stats(
                config.domain_names[d], result.sources[d], result.is_label[d],
                result.file_order, result.domains[d])
            for d in range(config.num_domains)},
        **result.users,
        **_split_stats(config, result),
        "splits": result.splits,
        "side_features": result.side_features,
        "warnings": warnings,
        "seconds": round(time.time() - start, 3),
    }
    writer_lib.write_json(os.path.join(staging, STATS_FILE), stats)
  logging.info("wrote %s in %.1f s: %s", config.output_dir, time.time() - start,
               {k: v["examples"] for k, v in result.splits.items()})
  return stats


def _local_driver(config: PrepareConfig) -> Callable[[str], DriverResult]:
  """The local driver (:mod:`dasl_tf.prepare.local`): reads and checks the inputs now.

  Returns:
    The function that writes the examples and vocabularies into a staging
    directory and returns the :class:`DriverResult`.
  """
  raws = readers.read_domains(config)
  logging.info("read %s rows of domains %s", [len(raw) for raw in raws],
               list(config.domain_names))
  cleans = [interactions_lib.clean(raw, config.label_threshold) for raw in raws]
  interactions = interactions_lib.merge(cleans, config)
  splits_lib.check_split_sizes(
      splits_lib.domain_counts(interactions.split, interactions.domain, config.split_names,
                               config.num_domains),
      config, len(interactions.offsets) - 1, interactions.time_cuts)
  encoding = encoding_of(config, interactions.user_vocab, interactions.item_vocabs,
                         stats_lib.train_item_counts(interactions, config.split_names))
  local.check_memory(interactions, encoding.params)

  def write(staging: str) -> DriverResult:
    writers = writer_lib.ShardWriters(staging, config.split_names, config.num_shards,
                                      config.compress, config.seed)
    try:
      counts = local.run(interactions, encoding.params, encoding.encoder, config.split_names,
                         writers)
    finally:
      writers.close()
    write_vocabularies(staging, interactions.user_vocab, interactions.item_vocabs, encoding)
    return DriverResult(
        splits=counts,
        domains=tuple(stats_lib.domain_counts(raw, clean, interactions, d)
                      for d, (raw, clean) in enumerate(zip(raws, cleans))),
        users=stats_lib.user_stats(interactions),
        num_users=interactions.user_vocab.size,
        num_items=tuple(v.size for v in interactions.item_vocabs),
        side_features=encoding.side_feature_stats,
        sources=tuple(raw.source for raw in raws),
        is_label=tuple(raw.is_label for raw in raws),
        file_order=raws[0].file_order,
        time_unit=raws[0].time_unit,
        time_cuts=interactions.time_cuts)

  return write


@dataclasses.dataclass
class Encoding:
  """How examples are encoded: side features, negative sampling and the encoder.

  Attributes:
    user_features: user side features aligned to the user vocabulary, or None.
    item_features: item side features aligned to the item vocabularies, or None.
    side_feature_stats: :func:`stats_lib.side_feature_stats` of both.
    params: the per-user function's parameters (history, negatives, seeds).
    encoder: serializes examples with their side features.
  """
  user_features: Optional[SideFeatures]
  item_features: Optional[SideFeatures]
  side_feature_stats: Dict[str, object]
  params: ExampleParams
  encoder: ExampleEncoder


def encoding_of(config: PrepareConfig, user_vocab: vocab_lib.Vocabulary,
                item_vocabs: Tuple[vocab_lib.Vocabulary, ...],
                train_item_counts: Tuple[np.ndarray, ...]) -> Encoding:
  """Reads the side features against the vocabularies; builds the sampling parameters and encoder.

  Args:
    config: the run's configuration.
    user_vocab: the user vocabulary.
    item_vocabs: the item vocabulary of each domain.
    train_item_counts: per domain, trained records per item index (popularity negatives).
  """
  user_features = side_features.load([config.user_features], [user_vocab],
                                     config.numeric_features, config.categorical_features,
                                     config.strip_ids)
  item_features = side_features.load([config.item_features_a, config.item_features_b],
                                     item_vocabs, config.numeric_features,
                                     config.categorical_features, config.strip_ids)
  feature_stats = stats_lib.side_feature_stats(user_features, item_features)
  params = ExampleParams.from_config(config, tuple(v.size for v in item_vocabs),
                                     train_item_counts)
  encoder = ExampleEncoder(feature_spec(config, feature_stats), user_features, item_features)
  return Encoding(user_features, item_features, feature_stats, params, encoder)


def write_vocabularies(output_dir: str, user_vocab: vocab_lib.Vocabulary,
                       item_vocabs: Tuple[vocab_lib.Vocabulary, ...],
                       encoding: Encoding) -> None:
  """Writes ``vocab/``: users, the items of each domain (``items_a``, ...), side-feature values."""
  vocab_dir = os.path.join(output_dir, VOCAB_DIR)
  vocab_lib.write_all(vocab_dir, users=user_vocab,
                      **{f"items_{F.domain_suffix(d)}": vocabulary
                         for d, vocabulary in enumerate(item_vocabs)})
  side_features.write_vocabs(vocab_dir, "user", encoding.user_features)
  side_features.write_vocabs(vocab_dir, "item", encoding.item_features)


def feature_spec(config: PrepareConfig, side_feature_stats: Dict[str, object]) -> F.FeatureSpec:
  """The feature spec of the records: history length, negatives and side-feature widths.

  Args:
    config: the run's configuration.
    side_feature_stats: :func:`stats_lib.side_feature_stats` of the side features.
  """
  user = side_feature_stats.get("user", {})
  item = side_feature_stats.get("item", {})
  return F.FeatureSpec(
      history_length=config.history_length,
      user_num_dim=len(user.get("numeric_columns", ())),
      user_cat_dim=len(user.get("categorical_columns", ())),
      item_num_dim=len(item.get("numeric_columns", ())),
      item_cat_dim=len(item.get("categorical_columns", ())),
      num_negatives=config.num_negatives,
      num_train_negatives=config.train_negatives,
      has_timestamp=True,
      num_domains=config.num_domains)


def _split_stats(config: PrepareConfig, result: DriverResult) -> Dict[str, object]:
  """The split rule, its cuts and the ``timestamp`` unit, for ``schema.json`` and ``stats.json``."""
  return stats_lib.split_stats(config.split, result.time_cuts, result.time_unit,
                               result.file_order)


def _schema(config: PrepareConfig, result: DriverResult) -> F.DatasetSchema:
  user = result.side_features.get("user", {})
  item = result.side_features.get("item", {})
  return F.DatasetSchema(
      feature_spec=feature_spec(config, result.side_features),
      num_users=result.num_users,
      num_items_a=result.num_items[0],
      num_items_b=result.num_items[1],
      num_items_more=tuple(result.num_items[2:]),
      user_num_columns=tuple(user.get("numeric_columns", ())),
      user_cat_columns=tuple(user.get("categorical_columns", ())),
      user_cat_vocab_sizes=tuple(user.get("vocab_sizes", ())),
      item_num_columns=tuple(item.get("numeric_columns", ())),
      item_cat_columns=tuple(item.get("categorical_columns", ())),
      item_cat_vocab_sizes=tuple(item.get("vocab_sizes", ())),
      domain_names=tuple(config.domain_names),
      splits={name: tuple(writer_lib.shard_paths(name, config.num_shards, config.compress))
              for name in config.split_names},
      **_split_stats(config, result))
