"""Warmup requests: ``assets.extra/tf_serving_warmup_requests`` of an export.

TensorFlow Serving replays these ``PredictionLog`` records when it loads a
version, before the version takes traffic, so the first real request does not
pay for graph initialisation. One request per signature is written (a
``predict_log``, or a ``regress_log``/``classify_log`` for the signatures of
those APIs), built by :class:`dasl_tf.serving.client.DaslClient` from the first
ids of the vocabularies, so warmup exercises the same request path as real
clients.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from dasl_tf import features as F
from dasl_tf import filesystems
from dasl_tf.serving import signatures
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving.client import DaslClient

WARMUP_FILE = "tf_serving_warmup_requests"


def _first_ids(vocab_dir: str, file_name: str, count: int, id_dtype: str) -> list:
  with filesystems.open_file(os.path.join(vocab_dir, file_name)) as f:
    ids = f.read().splitlines()[:count]
  return [int(i) for i in ids] if id_dtype == "int64" else ids


def warmup_logs(serving_spec: spec_lib.ServingSpec, vocab_dir: str
               ) -> List[prediction_log_pb2.PredictionLog]:
  """One ``PredictionLog`` per signature, with one row per domain where rows apply.

  The row of domain A has every history full (T ids), those of the other
  domains one id of domain A and the other histories empty.
  """
  t = serving_spec.history_length
  dtype = serving_spec.id_dtype
  histories = serving_spec.histories
  users = _first_ids(vocab_dir, signatures.USERS_VOCAB, 2, dtype)
  items = [_first_ids(vocab_dir, signatures.items_vocab(d),
                      max(t, serving_spec.candidates_per_request), dtype)
           for d in range(serving_spec.num_domains)]
  shapes = serving_spec.feature_spec.shapes(with_label=False)
  side = {name: [0] * shape[0] for name, (_, shape) in shapes.items()
          if name in spec_lib.SIDE_FEATURES}
  user_side = {k: v for k, v in side.items() if k in spec_lib.USER_SIDE_FEATURES}
  client = DaslClient(serving_spec)
  full = dict(zip(histories, (ids[:t] for ids in items)))
  short = {name: items[0][:1] if name == F.HIST_A else [] for name in histories}
  predict_rows = [
      {F.USER_ID: users[0] if d == F.DOMAIN_A else users[-1], F.ITEM_ID: ids[0], F.DOMAIN: d,
       **(full if d == F.DOMAIN_A else short), **side}
      for d, ids in enumerate(items)]
  recommend_rows = [{F.USER_ID: users[0], F.DOMAIN: F.DOMAIN_A, **full,
                     spec_lib.CANDIDATES: items[0][:serving_spec.candidates_per_request],
                     **user_side}]
  first_index = F.NUM_RESERVED_IDS
  example_rows = [
      {F.USER_ID: first_index, F.ITEM_ID: first_index, F.DOMAIN: d,
       **{name: [first_index] for name in histories}, **side}
      for d in range(serving_spec.num_domains)]
  requests = {
      spec_lib.SERVING_DEFAULT: client.example_inputs(predict_rows),
      spec_lib.SERVING_INDICES: client.index_example_inputs(example_rows),
      spec_lib.PREDICT: client.predict_inputs(predict_rows),
      spec_lib.RECOMMEND: client.recommend_inputs(recommend_rows),
  }
  logs = []
  for signature, inputs in requests.items():
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(client.grpc_request(signature, inputs))
    logs.append(log)
  for signature, api_log in ((spec_lib.REGRESS, "regress_log"),
                             (spec_lib.CLASSIFY, "classify_log")):
    log = prediction_log_pb2.PredictionLog()
    getattr(log, api_log).request.CopyFrom(client.api_request(signature, predict_rows))
    logs.append(log)
  return logs


def write_warmup(logs: Sequence[prediction_log_pb2.PredictionLog], export_dir: str) -> str:
  """Writes the records to ``<export_dir>/assets.extra/tf_serving_warmup_requests``."""
  directory = os.path.join(export_dir, spec_lib.ASSETS_EXTRA)
  filesystems.files_for(directory).makedirs(directory)
  path = os.path.join(directory, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for log in logs:
      writer.write(log.SerializeToString())
  return path


def read_warmup(export_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  """The warmup records of an export, parsed."""
  path = os.path.join(export_dir, spec_lib.ASSETS_EXTRA, WARMUP_FILE)
  logs = []
  for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record)
    logs.append(log)
  return logs
