"""``prepare(config)``: raw logs -> TFRecord splits, schema, vocabularies and stats.

Steps: read both domains -> clean (drop and count) -> vocabularies and the
merged per-user table -> side features -> per-user examples through the local
driver or the Beam pipeline -> ``schema.json``, ``stats.json``, ``vocab/``, and
the same facts as TensorFlow Metadata protos (``schema.pbtxt``, ``stats.pb``),
all in a staging directory renamed to ``output_dir`` at the end.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict

from absl import logging

from dasl_tf import features as F
from dasl_tf.prepare import interactions as interactions_lib
from dasl_tf.prepare import local
from dasl_tf.prepare import readers
from dasl_tf.prepare import side_features
from dasl_tf.prepare import stats as stats_lib
from dasl_tf.prepare import tfmd
from dasl_tf.prepare import vocab as vocab_lib
from dasl_tf.prepare import writer as writer_lib
from dasl_tf.prepare.config import PrepareConfig
from dasl_tf.prepare.encoder import ExampleEncoder
from dasl_tf.prepare.examples import ExampleParams

STATS_FILE = "stats.json"
VOCAB_DIR = "vocab"


def prepare(config: PrepareConfig) -> Dict[str, object]:
  """Runs the whole preparation; returns the stats also written to ``stats.json``.

  Raises:
    PrepareError: bad input or configuration (the message names the file,
      line or field); nothing is left at ``config.output_dir``.
  """
  start = time.time()
  raw_a, raw_b = readers.read_domains(config)
  logging.info("read %d rows of domain A and %d of domain B", len(raw_a), len(raw_b))
  clean_a = interactions_lib.clean(raw_a, config.label_threshold)
  clean_b = interactions_lib.clean(raw_b, config.label_threshold)
  interactions = interactions_lib.merge(clean_a, clean_b, config)
  user_stats = stats_lib.user_stats(interactions)
  warnings = stats_lib.warnings_of(user_stats, [raw_a, raw_b])
  for warning in warnings:
    logging.warning("%s", warning)
  user_features = side_features.load(
      [config.user_features], [interactions.user_vocab],
      config.numeric_features, config.categorical_features)
  item_features = side_features.load(
      [config.item_features_a, config.item_features_b], interactions.item_vocabs,
      config.numeric_features, config.categorical_features)
  schema = _schema(config, interactions, user_features, item_features)
  params = ExampleParams.from_config(
      config, (schema.num_items_a, schema.num_items_b),
      stats_lib.train_item_counts(interactions, config.split_names))
  local.check_memory(interactions, params)
  encoder = ExampleEncoder(schema.feature_spec, user_features, item_features)
  with writer_lib.staging_dir(config.output_dir, config.overwrite) as staging:
    if config.runner == "beam":
      from dasl_tf.prepare import beam_pipeline  # pylint: disable=g-import-not-at-top
      counts = beam_pipeline.run(interactions, params, encoder, config, staging)
    else:
      writers = writer_lib.ShardWriters(staging, config.split_names, config.num_shards,
                                        config.compress, config.seed)
      try:
        counts = local.run(interactions, params, encoder, config.split_names, writers)
      finally:
        writers.close()
    vocab_dir = os.path.join(staging, VOCAB_DIR)
    vocab_lib.write_all(vocab_dir, users=interactions.user_vocab,
                        items_a=interactions.item_vocabs[0], items_b=interactions.item_vocabs[1])
    side_features.write_vocabs(vocab_dir, "user", user_features)
    side_features.write_vocabs(vocab_dir, "item", item_features)
    schema.save(staging)
    tfmd.write(staging, schema, counts)
    stats = {
        "config": dataclasses.asdict(config),
        "domains": {
            "A": stats_lib.domain_stats(config.domain_names[0], raw_a, clean_a, interactions, 0),
            "B": stats_lib.domain_stats(config.domain_names[1], raw_b, clean_b, interactions, 1),
        },
        **user_stats,
        "splits": counts,
        "side_features": stats_lib.side_feature_stats(user_features, item_features),
        "warnings": warnings,
        "seconds": round(time.time() - start, 3),
    }
    writer_lib.write_json(os.path.join(staging, STATS_FILE), stats)
  logging.info("wrote %s in %.1f s: %s", config.output_dir, time.time() - start,
               {k: v["examples"] for k, v in counts.items()})
  return stats


def _schema(config: PrepareConfig, interactions: interactions_lib.Interactions,
            user_features, item_features) -> F.DatasetSchema:
  spec = F.FeatureSpec(
      history_length=config.history_length,
      user_num_dim=len(user_features.numeric_columns) if user_features else 0,
      user_cat_dim=len(user_features.categorical_columns) if user_features else 0,
      item_num_dim=len(item_features.numeric_columns) if item_features else 0,
      item_cat_dim=len(item_features.categorical_columns) if item_features else 0,
      num_negatives=config.num_negatives,
      num_train_negatives=config.train_negatives)
  return F.DatasetSchema(
      feature_spec=spec,
      num_users=interactions.user_vocab.size,
      num_items_a=interactions.item_vocabs[0].size,
      num_items_b=interactions.item_vocabs[1].size,
      user_num_columns=user_features.numeric_columns if user_features else (),
      user_cat_columns=user_features.categorical_columns if user_features else (),
      user_cat_vocab_sizes=user_features.vocab_sizes if user_features else (),
      item_num_columns=item_features.numeric_columns if item_features else (),
      item_cat_columns=item_features.categorical_columns if item_features else (),
      item_cat_vocab_sizes=item_features.vocab_sizes if item_features else (),
      domain_names=tuple(config.domain_names),
      splits={name: tuple(writer_lib.shard_paths(name, config.num_shards, config.compress))
              for name in config.split_names})
