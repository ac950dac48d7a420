"""The Apache Beam driver: every pass over the data runs in Beam's workers.

The launching process builds the pipeline, runs it, and reads back its
counters and a summary of a few sizes; no record passes through it, so its
memory does not grow with the data. Pipeline::

  per input: Create(pattern) -> MatchFiles (sorted) -> Blocks (byte ranges of
    text, Parquet row groups, whole .gz / .mat files) -> Reshuffle
    -> ReadBlock: parse, check, drop invalid rows (a counter per reason)
  -> CombinePerKey((domain, user, item) -> earliest record)       de-duplication
  -> GroupByKey(user) -> UserTimeline: pseudo-times, merged order, integer times,
     held-out domain (cold-start users)
  -> global_time only: CombineGlobally(histogram of record times) -> the two cuts
  -> Split: the split rule of every record (the cuts as a side input)
  -> users: CombineGlobally(sorted)                                user vocabulary
  -> items of the trained records: CombinePerKey(count) -> CombineGlobally
                                                                   item vocabularies
  -> Context: side features read against the vocabularies, negative sampling
     parameters, encoder (one small side input)
  -> UserExamples: build_user_examples and encode (tagged by split)
  -> WriteToTFRecord per split;  Metadata: vocab/ files and the summary

The records, the rules and the seeds are those of the local driver, so both
write the same examples (``tests/test_prepare.py`` compares them record by
record). Run it with ``--runner beam`` plus ``--beam_runner`` (Beam's own
``--runner``, DirectRunner by default) and standard pipeline options, e.g.
``--direct_num_workers=2 --direct_running_mode=multi_processing`` or
``--beam_runner DataflowRunner --project=... --region=... --temp_location=gs://...``.
The DirectRunner runs in process and never downloads a runner; how the
pipeline is run and its errors raised is :mod:`dasl_tf.prepare.beam_runner`.

It is one module because the pipeline and the plain per-record functions its
steps call (``read_block``, ``user_timeline``, ``user_examples``, ...) are one
unit: each step reads beside what it runs, and neither has another user.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from dasl_tf import filesystems
from dasl_tf import json_io
from dasl_tf.features import NUM_RESERVED_IDS, OOV_ID, domain_suffix
from dasl_tf.prepare import beam_runner
from dasl_tf.prepare import interactions as interactions_lib
from dasl_tf.prepare import pipeline as pipeline_lib
from dasl_tf.prepare import readers
from dasl_tf.prepare import splits
from dasl_tf.prepare import stats as stats_lib
from dasl_tf.prepare import writer as writer_lib
from dasl_tf.prepare.config import PrepareConfig, PrepareError
from dasl_tf.prepare.examples import Timelines, build_user_examples, count_keys
from dasl_tf.prepare.interactions import DROP_REASONS
from dasl_tf.prepare.vocab import Vocabulary

NAMESPACE = beam_runner.NAMESPACE
SUMMARY_FILE = "_beam_summary.json"


def domain_key(domain: int) -> str:
  """How counters and messages name a domain: ``A``, ``B``, ``C``, ..."""
  return domain_suffix(domain).upper()


# A record's place in its input: (file rank, block start, row group, row in block);
# sorting by it restores file order.
Position = Tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class BlockFacts:
  """What a block says of its input, for the checks that need every block.

  Attributes:
    domain: the domain index, 0 = A, 1 = B, ...
    source: the block, for messages.
    rows_read: the block's rows of the domain.
    dropped: rows dropped by the row checks, per reason (duplicates aside).
    valid: rows kept by the row checks.
    is_label: the input holds 0/1 labels.
    file_order: the input has no time column.
    time_unit: "ms", "s", or "" (file order).
    first_time: the block's first time, for messages.
  """
  domain: int
  source: str
  rows_read: int
  dropped: Dict[str, int]
  valid: int
  is_label: bool
  file_order: bool
  time_unit: str
  first_time: Optional[float]


@dataclasses.dataclass(frozen=True)
class InputFacts:
  """The checked facts of the inputs (``time_unit``: "ms", "s", or "" without times)."""
  is_label: Tuple[bool, ...]
  file_order: bool
  time_unit: str


def check_inputs(blocks: Sequence[BlockFacts], config: PrepareConfig) -> InputFacts:
  """The checks of the local reader and cleaner, over every block's facts.

  Raises:
    PrepareError: a domain has no valid row (or no row of its category), its
      files differ in having a rating or time column, one domain has times
      and another not, or the times are in different units.
  """
  sources = readers.domain_sources(config)
  for domain in range(config.num_domains):
    own = [b for b in blocks if b.domain == domain]
    if not sum(b.valid for b in own):
      category = config.domain_categories[domain] if config.input else ""
      raise PrepareError(f"domain {domain_key(domain)} ({sources[domain]}) has no valid record"
                         + (f" (no valid row of category {category!r})" if config.input else ""))
    if len({(b.is_label, b.file_order) for b in own}) > 1:
      raise PrepareError(f"{sources[domain]}: files differ in having a rating or time column")
  if len({b.file_order for b in blocks}) > 1:
    raise PrepareError("one domain has a timestamp column and another has not: their "
                       "records cannot be ordered against each other")
  readers.check_time_units([(b.source, b.time_unit, b.first_time) for b in blocks])
  is_label = tuple(next(b.is_label for b in blocks if b.domain == d)
                   for d in range(config.num_domains))
  return InputFacts(is_label, blocks[0].file_order,
                    next((b.time_unit for b in blocks if b.valid and b.time_unit), ""))


def read_block(block: readers.Block, domain: int, config: PrepareConfig
              ) -> Iterator[object]:
  """Reads a block: per domain, its :class:`BlockFacts`, then its valid rows.

  Rows come as ``((domain, user, item), (timestamp, position, label))``, keyed
  for de-duplication; the timestamp is 0 for inputs without a time column
  (position orders them). ``domain`` -1 splits a single input by category.
  """
  table = readers.read_block(block, config.format)
  # The checks of a whole file (its columns) on no row, so that their messages
  # name the file as the local driver's do, not the block.
  no_rows = {name: values[:0] for name, values in table.columns.items()}
  readers.log_of_table(dataclasses.replace(table, path=block.path, columns=no_rows), config,
                       with_category=domain < 0)
  log = readers.log_of_table(table, config, with_category=domain < 0)
  parts = (enumerate(readers.split_by_category(log, config)) if domain < 0
           else [(domain, log)])
  for part_domain, part in parts:
    valid, dropped = interactions_lib.validity(part)
    rows = np.flatnonzero(valid)
    yield BlockFacts(part_domain, log.source, len(part), dropped, len(rows), part.is_label,
                     part.file_order, part.time_unit,
                     float(part.timestamp[0]) if len(part) else None)
    labels = interactions_lib.labels(part, rows, config.label_threshold).tolist()
    times = (np.zeros(len(rows)) if part.file_order else part.timestamp[rows]).tolist()
    for row, user, item, timestamp, label in zip(rows.tolist(), part.user[rows].tolist(),
                                                  part.item[rows].tolist(), times, labels):
      yield ((part_domain, user, item),
             (timestamp, (block.file_index, block.start, block.row_group, row), label))


@dataclasses.dataclass
class UserTimeline:
  """One user's records in time order, items as raw ids (before the item vocabularies).

  ``time`` is :func:`interactions_lib.integer_times` of ``timestamp``;
  ``held_out`` the user's held-out domain (``splits.NO_DOMAIN`` for none).
  """
  item: np.ndarray
  domain: np.ndarray
  label: np.ndarray
  timestamp: np.ndarray
  split: np.ndarray
  time: np.ndarray
  held_out: int


def user_timeline(user: str, records: Iterable[Tuple[int, str, float, Position, float]],
                  config: PrepareConfig, file_order: bool) -> UserTimeline:
  """Orders a user's records as the local driver's merged table does; chooses a held-out domain.

  Args:
    user: the raw user id.
    records: ``(domain, item, timestamp, position, label)``, in any order.
    config: the run's configuration (cold-start share, seed).
    file_order: the inputs have no time column: a user's k-th of n records of
      a domain (in file order) is at ``(k + 0.5) / n``.

  Returns:
    The timeline, every record in split 0 until :func:`split_timeline`.
  """
  records = sorted(records, key=lambda r: (r[0], r[3]))  # domain, then file order
  domain = np.array([r[0] for r in records], np.int64)
  timestamp = np.array([r[2] for r in records], np.float64)
  if file_order:
    for d in range(config.num_domains):
      rows = np.flatnonzero(domain == d)
      timestamp[rows] = (np.arange(len(rows)) + 0.5) / max(len(rows), 1)
  order = sorted(range(len(records)),
                 key=lambda k: (timestamp[k], domain[k], records[k][3]))
  in_a, in_b, *in_more = (np.array([(domain == d).any()]) for d in range(config.num_domains))
  held_out = splits.held_out_domains(np.array([user], dtype=object), in_a, in_b,
                                     config.cold_start_users, config.seed, in_more)
  return UserTimeline(np.array([records[k][1] for k in order], dtype=object), domain[order],
                      np.array([records[k][4] for k in order], np.float32), timestamp[order],
                      np.zeros(len(order), np.int64),
                      interactions_lib.integer_times(timestamp[order], file_order),
                      int(held_out[0]))


def split_timeline(timeline: UserTimeline, cuts: Optional[Tuple[int, int]],
                   config: PrepareConfig) -> UserTimeline:
  """The timeline with the split of each record (temporal or global_time; k-fold keeps 0).

  Args:
    timeline: a :func:`user_timeline`.
    cuts: the global_time split's ``(validation_cut, test_cut)``, else None.
    config: the run's configuration.
  """
  if config.split == "kfold":
    return timeline
  n = len(timeline.time)
  return dataclasses.replace(timeline, split=splits.record_splits(
      config.split, np.array([0, n]), timeline.time, timeline.domain,
      np.full(n, timeline.held_out, np.int64), config.validation_fraction,
      config.test_fraction, cuts))


def time_histogram_of(histograms: Iterable[Dict[int, int]]) -> Dict[int, int]:
  """The sum of histograms ``{time: records}``."""
  total: Dict[int, int] = {}
  for histogram in histograms:
    for time, count in histogram.items():
      total[time] = total.get(time, 0) + count
  return total


def user_time_histogram(timeline: UserTimeline) -> Dict[int, int]:
  """``{time: records}`` of one user's records."""
  times, counts = np.unique(timeline.time, return_counts=True)
  return dict(zip(times.tolist(), counts.tolist()))


def global_cuts(histogram: Dict[int, int], config: PrepareConfig) -> Tuple[int, int]:
  """:func:`splits.time_cuts` of the histogram of every record's time."""
  times = np.array(sorted(histogram), dtype=np.int64)
  return splits.time_cuts(times, np.array([histogram[t] for t in times.tolist()], np.int64),
                          config.validation_fraction, config.test_fraction)


def trained(timeline: UserTimeline, config: PrepareConfig) -> np.ndarray:
  """Which records are trained on: the train split, or every fold of a k-fold split."""
  if config.split != "kfold":
    return timeline.split == splits.TRAIN
  return np.ones(len(timeline.split), dtype=bool)


@dataclasses.dataclass(frozen=True)
class ItemVocabularies:
  """Per domain, the vocabulary of the trained items and records per index (OOV included)."""
  vocabularies: Tuple[Vocabulary, ...]
  train_counts: Tuple[np.ndarray, ...]


def item_vocabularies(counts: Iterable[Tuple[Tuple[int, str], int]], min_count: int,
                      num_domains: int) -> ItemVocabularies:
  """The item vocabularies of the K domains from ``((domain, item), trained records)`` of every item.

  Raises:
    PrepareError: a domain has no record in the training split.
  """
  by_domain: List[Dict[str, int]] = [{} for _ in range(num_domains)]
  for (domain, item), count in counts:
    by_domain[domain][item] = count
  vocabularies, train_counts = [], []
  for domain, items in enumerate(by_domain):
    if not any(items.values()):
      raise PrepareError(f"domain {domain_key(domain)} has no record in the training split: "
                         "every user's records of it fall in validation or test")
    kept = sorted(item for item, count in items.items() if count and count >= min_count)
    per_index = np.zeros(len(kept) + NUM_RESERVED_IDS, np.int64)
    per_index[NUM_RESERVED_IDS:] = [items[item] for item in kept]
    per_index[OOV_ID] = sum(items.values()) - per_index.sum()
    vocabularies.append(Vocabulary(np.array(kept, dtype=object)))
    train_counts.append(per_index)
  return ItemVocabularies(tuple(vocabularies), tuple(train_counts))


@dataclasses.dataclass
class ExampleContext:
  """Everything the per-user example step needs besides the user's timeline.

  Attributes:
    user_vocab: the user vocabulary.
    item_vocabs: the item vocabularies and their trained-record counts.
    user_index: raw user id -> index.
    item_index: per domain, raw item id -> index.
    folds: the fold of each user index (k-fold split), else None.
    encoding: side features, sampling parameters and encoder.
  """
  user_vocab: Vocabulary
  item_vocabs: ItemVocabularies
  user_index: Dict[str, int]
  item_index: Tuple[Dict[str, int], ...]
  folds: Optional[np.ndarray]
  encoding: pipeline_lib.Encoding


def example_context(users: Sequence[str], items: ItemVocabularies, config: PrepareConfig
                   ) -> ExampleContext:
  """Vocabulary lookups, side features, sampling parameters and encoder of a run."""
  user_vocab = Vocabulary(np.array(sorted(users), dtype=object))
  return ExampleContext(
      user_vocab=user_vocab,
      item_vocabs=items,
      user_index=_index_of(user_vocab),
      item_index=tuple(_index_of(v) for v in items.vocabularies),
      folds=(splits.user_folds(user_vocab.size, config.folds, config.seed)
             if config.split == "kfold" else None),
      encoding=pipeline_lib.encoding_of(config, user_vocab, items.vocabularies,
                                        items.train_counts))


def _index_of(vocabulary: Vocabulary) -> Dict[str, int]:
  return {token: k + NUM_RESERVED_IDS for k, token in enumerate(vocabulary.tokens.tolist())}


def user_examples(user: str, timeline: UserTimeline, context: ExampleContext,
                  split_names: Sequence[str]
                 ) -> Iterator[Tuple[str, Dict[str, int], List[bytes]]]:
  """The user's examples per split: ``(split name, counts, encoded records)``."""
  user_index = context.user_index[user]
  item = np.array([context.item_index[d].get(i, OOV_ID)
                   for d, i in zip(timeline.domain.tolist(), timeline.item.tolist())], np.int64)
  split = (timeline.split if context.folds is None
           else np.full(len(item), context.folds[user_index], np.int64))
  examples = build_user_examples(
      Timelines(np.full(len(item), user_index, np.int64), item, timeline.domain,
                timeline.label, timeline.timestamp, split, timeline.time,
                np.full(len(item), timeline.held_out, np.int64)), context.encoding.params)
  for index, name in enumerate(split_names):
    part = examples.take(examples.split == index)
    if len(part):
      params = context.encoding.params
      yield name, part.counts(), context.encoding.encoder.encode(
          part, params.negatives_by_split[index], params.train_negatives_by_split[index])


def write_metadata(context: ExampleContext, facts: InputFacts,
                   cuts: Optional[Tuple[int, int]], staging: str) -> None:
  """Writes ``vocab/`` and the summary the launcher reads back (sizes, columns, time cuts)."""
  pipeline_lib.write_vocabularies(staging, context.user_vocab, context.item_vocabs.vocabularies,
                                  context.encoding)
  summary = {"num_users": context.user_vocab.size,
             "num_items": [v.size for v in context.item_vocabs.vocabularies],
             "side_features": context.encoding.side_feature_stats,
             "is_label": list(facts.is_label), "file_order": facts.file_order,
             "time_unit": facts.time_unit, "time_cuts": None if cuts is None else list(cuts)}
  with filesystems.open_file(os.path.join(staging, SUMMARY_FILE), "w") as f:
    f.write(json.dumps(summary))


def run(config: PrepareConfig, staging: str) -> pipeline_lib.DriverResult:
  """Runs the pipeline; writes shards and ``vocab/`` under ``staging``.

  Raises:
    PrepareError: bad input (the message names the file and block).
  """
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  split_names = config.split_names

  def counter(name: str):
    return beam.metrics.Metrics.counter(NAMESPACE, name)

  class ReadBlockFn(beam.DoFn):
    """(block, domain) -> valid rows keyed by (domain, user, item); facts to a tagged output."""

    def process(self, element):
      block, domain = element
      for value in read_block(block, domain, config):
        if isinstance(value, BlockFacts):
          key = domain_key(value.domain)
          counter(f"{key}/rows_read").inc(value.rows_read)
          for reason, count in value.dropped.items():
            counter(f"{key}/dropped/{reason}").inc(count)
          yield beam.pvalue.TaggedOutput("facts", value)
        else:
          yield value

  class UserTimelineFn(beam.DoFn):
    """(user, records) -> (user, UserTimeline); counts records, clicks and users."""

    def process(self, element, facts: InputFacts):
      user, records = element
      timeline = user_timeline(user, records, config, facts.file_order)
      present = np.array([(timeline.domain == d).any() for d in range(config.num_domains)])
      for d in range(config.num_domains):
        rows = timeline.domain == d
        counter(f"{domain_key(d)}/records").inc(int(rows.sum()))
        counter(f"{domain_key(d)}/positives").inc(int(timeline.label[rows].sum()))
        counter(f"{domain_key(d)}/users").inc(int(present[d]))
      users = stats_lib.user_counts(present[None, :], np.array([timeline.held_out]))
      for key, count in users.items():
        counter(key).inc(count)
      yield user, timeline

  class UserExamplesFn(beam.DoFn):
    """(user, timeline) -> encoded examples tagged by split; counts per split."""

    def process(self, element, context: ExampleContext):
      user, timeline = element
      for name, counts, records in user_examples(user, timeline, context, split_names):
        for key, value in counts.items():
          counter(f"{name}/{key}").inc(value)
        for record in records:
          yield beam.pvalue.TaggedOutput(name, record)

  def item_keys(element):
    _, timeline = element
    for domain, item, is_trained in zip(timeline.domain.tolist(), timeline.item.tolist(),
                                        trained(timeline, config).tolist()):
      yield (domain, item), int(is_trained)

  def count_item(element):
    (domain, _), _ = element
    counter(f"{domain_key(domain)}/items").inc()
    return element

  options = pipeline_options.PipelineOptions(
      [f"--runner={config.beam_runner}", *config.beam_options])
  pipeline = beam.Pipeline(runner=beam_runner.pipeline_runner(options), options=options)
  sources = ([(config.input, -1)] if config.input
             else [(pattern, d) for d, pattern in enumerate(config.domain_inputs)])
  blocks = (
      pipeline
      | "Inputs" >> beam.Create(sources)
      | "MatchFiles" >> beam.FlatMap(
          lambda source: [(path, rank, source[1])
                          for rank, path in enumerate(readers.expand(source[0]))])
      | "Blocks" >> beam.FlatMap(
          lambda f: [(block, f[2]) for block in
                     readers.blocks_of(f[0], f[1], config.format, config.block_bytes)])
      | "Reshuffle" >> beam.Reshuffle())
  rows = blocks | "ReadBlock" >> beam.ParDo(ReadBlockFn()).with_output_types(
      beam.typehints.KV[beam.typehints.Any, beam.typehints.Any]).with_outputs("facts",
                                                                              main="rows")
  facts = (rows.facts
           | "AllFacts" >> beam.combiners.ToList()
           | "CheckInputs" >> beam.Map(check_inputs, config))
  timelines = (
      rows.rows
      | "Deduplicate" >> beam.CombinePerKey(min)
      | "ByUser" >> beam.Map(lambda kv: (kv[0][1], (kv[0][0], kv[0][2], *kv[1])))
      | "GroupByUser" >> beam.GroupByKey()
      | "UserTimeline" >> beam.ParDo(UserTimelineFn(), beam.pvalue.AsSingleton(facts)))
  if config.split == "global_time":
    cuts = (timelines
            | "UserTimes" >> beam.Map(lambda kv: user_time_histogram(kv[1]))
            | "TimeHistogram" >> beam.CombineGlobally(time_histogram_of)
            | "TimeCuts" >> beam.Map(global_cuts, config))
  else:
    cuts = pipeline | "NoCuts" >> beam.Create([None])
  timelines = timelines | "Split" >> beam.Map(
      lambda kv, cuts: (kv[0], split_timeline(kv[1], cuts, config)),
      beam.pvalue.AsSingleton(cuts))
  users = timelines | "Users" >> beam.Keys() | "UserList" >> beam.combiners.ToList()
  items = (timelines
           | "ItemKeys" >> beam.FlatMap(item_keys)
           | "TrainedRecordsPerItem" >> beam.CombinePerKey(sum)
           | "CountItems" >> beam.Map(count_item)
           | "ItemList" >> beam.combiners.ToList()
           | "ItemVocabularies" >> beam.Map(item_vocabularies, config.min_item_count,
                                            config.num_domains))
  context = users | "Context" >> beam.Map(example_context, beam.pvalue.AsSingleton(items),
                                          config)
  examples = timelines | "UserExamples" >> beam.ParDo(
      UserExamplesFn(), beam.pvalue.AsSingleton(context)).with_outputs(*split_names)
  compression = CompressionTypes.GZIP if config.compress else CompressionTypes.UNCOMPRESSED
  for name in split_names:
    _ = examples[name] | f"Write-{name}" >> beam.io.WriteToTFRecord(
        os.path.join(staging, name, writer_lib.SHARD_PREFIX),
        file_name_suffix=writer_lib.shard_suffix(config.compress),
        num_shards=config.num_shards, shard_name_template=writer_lib.SHARD_TEMPLATE,
        compression_type=compression)
  _ = context | "Metadata" >> beam.Map(write_metadata, beam.pvalue.AsSingleton(facts),
                                       beam.pvalue.AsSingleton(cuts), staging)
  result = beam_runner.run_pipeline(pipeline)
  return _driver_result(config, staging, beam_runner.counters(result))


def _driver_result(config: PrepareConfig, staging: str, counts: Dict[str, int]
                  ) -> pipeline_lib.DriverResult:
  """The run's result from its counters and the summary its last step wrote."""
  summary_path = os.path.join(staging, SUMMARY_FILE)
  summary = json_io.load(summary_path)
  filesystems.files_for(summary_path).remove(summary_path)
  keys = [domain_key(d) for d in range(config.num_domains)]
  domains = tuple(
      {"rows_read": counts.get(f"{key}/rows_read", 0),
       "records": counts.get(f"{key}/records", 0),
       "positives": counts.get(f"{key}/positives", 0),
       "users": counts.get(f"{key}/users", 0),
       "items": counts.get(f"{key}/items", 0),
       "vocabulary_items": summary["num_items"][d] - NUM_RESERVED_IDS,
       "dropped": {reason: counts.get(f"{key}/dropped/{reason}", 0)
                   for reason in DROP_REASONS}}
      for d, key in enumerate(keys))
  for d in range(config.num_domains):
    valid = domains[d]["rows_read"] - sum(domains[d]["dropped"].values())
    domains[d]["dropped"]["duplicate"] = valid - domains[d]["records"]
  return pipeline_lib.DriverResult(
      splits={name: {key: counts.get(f"{name}/{key}", 0)
                     for key in count_keys(config.num_domains)}
              for name in config.split_names},
      domains=domains,
      users={key: counts.get(key, 0) for key in stats_lib.user_keys(config.num_domains)},
      num_users=summary["num_users"],
      num_items=tuple(summary["num_items"]),
      side_features=summary["side_features"],
      sources=readers.domain_sources(config),
      is_label=tuple(summary["is_label"]),
      file_order=summary["file_order"],
      time_unit=summary["time_unit"],
      time_cuts=None if summary["time_cuts"] is None else tuple(summary["time_cuts"]))
