"""``dasl-prepare``: K >= 2 domains' raw interaction logs -> TFRecords the model reads.

Examples:

  dasl-prepare --format csv --input_a a.csv --input_b b.csv --output_dir data/
  dasl-prepare --format csv --inputs books.csv,movies.csv,music.csv --output_dir data/ \\
      --domain_names books,movies,music
  dasl-prepare --format csv --input all.csv --categories 1,2,4 --output_dir data/
  dasl-prepare --format douban --input_a book/ratings.dat --input_b music/ratings.dat \\
      --output_dir data/ --domain_names book,music
  dasl-prepare --format mat --input rating_with_timestamp.mat --category_a 1 \\
      --category_b 2 --output_dir data/ --split kfold --folds 5
  dasl-prepare ... --split global_time --cold_start_users 0.1
  dasl-prepare ... --runner beam --direct_num_workers=2   # other Beam options pass through

Bad input ends with ``dasl-prepare: error: <file[:line]>: <what>`` and exit status 2.
"""
from __future__ import annotations

import json
from typing import List

from absl import app
from absl import flags

from dasl_tf import prepare as prepare_lib
from dasl_tf.prepare import config as config_lib
from dasl_tf.pipelines import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the flags of ``dasl-prepare``; a second call (a second :func:`main`) keeps them."""
  if "input_a" in FLAGS:
    return
  with cli.key_flags():
    flags.DEFINE_enum("format", "csv", list(prepare_lib.FORMATS), "Input format.")
    flags.DEFINE_string("input_a", "", "File or glob of domain A's log.")
    flags.DEFINE_string("input_b", "", "File or glob of domain B's log.")
    flags.DEFINE_list("inputs", [], "One file or glob per domain, K >= 2 of them, in domain "
                      "order (instead of --input_a and --input_b).")
    flags.DEFINE_string("input", "", "One file holding every domain (with --categories, or "
                        "--category_a and --category_b).")
    flags.DEFINE_string("category_a", "", "Category id of domain A in --input.")
    flags.DEFINE_string("category_b", "", "Category id of domain B in --input.")
    flags.DEFINE_list("categories", [], "The category id of each domain in --input, K >= 2 "
                      "of them, in domain order (instead of --category_a and --category_b).")
    flags.DEFINE_string("output_dir", None,
                        "Output directory (must not exist without --overwrite).")
    flags.DEFINE_string("user_column", "user_id", "User id column (csv, tsv, parquet).")
    flags.DEFINE_string("item_column", "item_id", "Item id column.")
    flags.DEFINE_string("rating_column", "rating",
                        "Rating column (click = rating >= threshold).")
    flags.DEFINE_string("label_column", "label", "0/1 click column, used if the rating "
                        "column is absent.")
    flags.DEFINE_string("timestamp_column", "timestamp", "Time column; if absent, file order.")
    flags.DEFINE_string("category_column", "category", "Category column of a single --input.")
    flags.DEFINE_bool("strip_ids", False, "Strip leading and trailing whitespace from user and "
                      "item ids (logs and side-feature tables); without it such an id is an "
                      "error, since 'u1 ' and 'u1' would be two users.")
    flags.DEFINE_float("label_threshold", 4.0, "Click = rating >= this.")
    flags.DEFINE_integer("history_length", 10, "T: past items per domain in each example.")
    flags.DEFINE_integer("min_item_count", 1, "Items with fewer records map to OOV (id 1).")
    flags.DEFINE_enum("split", "temporal", list(config_lib.SPLITS), "Split rule: temporal "
                      "(per user: train, then validation, then test in time order), kfold "
                      "(users in --folds folds) or global_time (one cut in time for "
                      "validation and one for test over all records: train on the past, "
                      "score the future).")
    flags.DEFINE_float("validation_fraction", 0.1, "Temporal split: share of each user's "
                       "examples in the validation split (early stopping and best-epoch "
                       "selection read it); global_time: share of all records between the "
                       "validation and the test cut.")
    flags.DEFINE_float("test_fraction", 0.1, "Temporal split: share of each user's examples "
                       "in the test split, the end of the timeline (scored once, at the end "
                       "of training); global_time: share of all records at or after the "
                       "test cut.")
    flags.DEFINE_integer("folds", 5, "k-fold split: number of folds (at least 3).")
    flags.DEFINE_float("cold_start_users", 0.0, "Share of the users in two or more domains "
                       "that get one of their domains (each with equal chance) held out: all "
                       "their records of it go to test and it is left out of their other "
                       "histories (temporal and global_time splits; 0 = none).")
    flags.DEFINE_integer("num_negatives", 99, "Sampled negatives per evaluation example "
                         "(HR@10; 0 = none).")
    flags.DEFINE_integer("train_negatives", config_lib.PrepareConfig.train_negatives,
                         "Sampled negatives stored per training example "
                         "(0 = none): items of the target's domain the user has not touched "
                         "up to the target's time, for the top-n training objective.")
    flags.DEFINE_enum("negative_sampling", config_lib.PrepareConfig.negative_sampling,
                      list(config_lib.NEGATIVE_SAMPLERS), "Distribution of the training "
                      "negatives: uniform, or popularity (count ** --negative_alpha over "
                      "train records).")
    flags.DEFINE_float("negative_alpha", 0.75, "The exponent of popularity sampling "
                       "(--negative_sampling=popularity).")
    flags.DEFINE_integer("seed", 42, "Seed of negatives, folds and sharding.")
    flags.DEFINE_string("user_features", "",
                        "User side-feature table (CSV or Parquet, id first).")
    flags.DEFINE_string("item_features_a", "", "Side-feature table of domain A's items "
                        "(two domains only).")
    flags.DEFINE_string("item_features_b", "", "Side-feature table of domain B's items "
                        "(two domains only).")
    flags.DEFINE_list("numeric_features", [], "Side-feature columns to treat as numeric.")
    flags.DEFINE_list("categorical_features", [],
                      "Side-feature columns to treat as categorical.")
    flags.DEFINE_integer("num_shards", 4, "TFRecord shards per split.")
    flags.DEFINE_bool("compress", False, "Write GZIP shards (.tfrecord.gz).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")
    flags.DEFINE_list("domain_names", [], "Display names of the K domains, in domain order "
                      "(default: A,B,C,...).")
    flags.DEFINE_enum("runner", "local", list(config_lib.RUNNERS),
                      "local (fast, in-process) or beam.")
    flags.DEFINE_string("beam_runner", "DirectRunner", "With --runner beam: the Beam runner "
                        "(Beam's --runner option). Other Beam options pass through as they "
                        "are.")
    flags.DEFINE_integer("block_bytes", config_lib.PrepareConfig.block_bytes,
                         "With --runner beam: uncompressed text inputs are read in blocks of "
                         "about this many bytes, one worker task each.")
  flags.mark_flag_as_required("output_dir")


def config_from_flags(beam_options: List[str]) -> prepare_lib.PrepareConfig:
  """The :class:`PrepareConfig` of the parsed flags (unknown flags are Beam options)."""
  values = {name: FLAGS[name].value for name in prepare_lib.PrepareConfig.__dataclass_fields__
            if name in FLAGS and name != "beam_options"}
  for name in ("inputs", "categories", "numeric_features", "categorical_features",
               "domain_names"):
    values[name] = tuple(values[name])
  return prepare_lib.PrepareConfig(beam_options=tuple(beam_options), **values)


def _main(argv: List[str]) -> None:
  beam_options = list(argv[1:])
  if beam_options and FLAGS.runner != "beam":
    raise app.UsageError(f"unknown arguments {beam_options} (Beam options need --runner beam)")
  stats = prepare_lib.prepare(config_from_flags(beam_options))
  summary = {name: split["examples"] for name, split in stats["splits"].items()}
  print(json.dumps({"output_dir": FLAGS.output_dir, "examples": summary,
                    "users": stats["users"], "overlap_users": stats["overlap_users"],
                    "warnings": stats["warnings"]}, indent=2))


def main() -> None:
  """Console entry point ``dasl-prepare``."""
  define_flags()
  # Unknown --flags are Beam pipeline options, for --runner beam.
  cli.run_command("dasl-prepare", _main, known_only=True)


if __name__ == "__main__":
  main()
