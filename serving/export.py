"""``dasl-export``: a trained model directory -> a versioned SavedModel for TensorFlow Serving.

Usage::

  dasl-export --model_dir runs/dasl --export_base exports/dasl [--version N] [--overwrite]

writes ``exports/dasl/<N>/`` (default: one more than the highest existing
integer version, or 1) with

* ``saved_model.pb`` + ``variables/``: the ``serving_default``, ``predict`` and
  ``recommend`` signatures (:mod:`serving.signatures`), standard ops only;
* ``assets/``: the raw-id vocabularies the ``predict``/``recommend`` lookups read;
* ``assets.extra/tf_serving_warmup_requests``: warmup ``PredictionLog`` records;
* ``assets.extra/serving_spec.json``: the request contract for clients.

The version is assembled in a hidden temporary directory of ``export_base`` and
renamed into place, so TensorFlow Serving never sees half a version. An existing
version is never replaced unless ``--overwrite`` is given. The model directory
is only read.
"""
from __future__ import annotations

import os
import uuid
from typing import Optional

from absl import app
from absl import flags
from absl import logging

import tensorflow as tf

from dasl_tf import features as F
from dasl_tf import model_io
from serving import signatures
from serving import spec as spec_lib
from serving import warmup

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "trained model directory (dasl-train output)")
_EXPORT_BASE = flags.DEFINE_string(
    "export_base", None, "base path served by TensorFlow Serving; versions are its subdirectories")
_VERSION = flags.DEFINE_integer(
    "version", None, "version number; default: one more than the highest existing version")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing version")
_TOP_N = flags.DEFINE_integer("top_n", 10, "items returned per user by the recommend signature")
_ID_DTYPE = flags.DEFINE_enum(
    "id_dtype", "auto", ("auto",) + spec_lib.ID_DTYPES,
    "dtype of raw ids in predict/recommend; auto: int64 when every vocabulary entry is an integer")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "dasl", "name the model is served under (warmup requests and clients use it)")


def existing_versions(export_base: str) -> list:
  """The integer version directories under ``export_base``, ascending."""
  if not tf.io.gfile.isdir(export_base):
    return []
  names = [name.rstrip("/") for name in tf.io.gfile.listdir(export_base)]
  return sorted(int(name) for name in names if name.isdigit())


def export_model(model_dir: str, export_base: str, version: Optional[int] = None,
                 overwrite: bool = False, top_n: int = 10, id_dtype: str = "auto",
                 model_name: str = "dasl") -> str:
  """Exports the finished model of ``model_dir`` as ``<export_base>/<version>``.

  Args:
    model_dir: a trained model directory (see :mod:`dasl_tf.model_io`).
    export_base: the directory TensorFlow Serving watches for versions.
    version: the version to write; None for the next integer.
    overwrite: replace ``<export_base>/<version>`` if it exists.
    top_n: items returned per user by ``recommend``.
    id_dtype: "int64", "string", or "auto" (int64 when every vocabulary entry is
      a canonical non-negative integer).
    model_name: the served model name.

  Returns:
    The path of the written version directory.

  Raises:
    FileExistsError: the version exists and ``overwrite`` is False.
    FileNotFoundError: ``model_dir`` holds no finished model.
    ValueError: bad version, or vocabularies that do not match the model.
  """
  if version is None:
    version = (existing_versions(export_base) or [0])[-1] + 1
  if version < 1:
    raise ValueError(f"version must be a positive integer, got {version}")
  final_dir = os.path.join(export_base, str(version))
  if tf.io.gfile.exists(final_dir) and not overwrite:
    raise FileExistsError(f"{final_dir} already exists; pass --overwrite to replace it, or "
                          "another --version")

  model, experiment, _ = model_io.load_model(model_dir)
  vocab_dir = os.path.join(model_dir, model_io.VOCAB_DIR)
  if id_dtype == "auto":
    id_dtype = signatures.infer_id_dtype(vocab_dir)
  serving_spec = spec_lib.ServingSpec(
      feature_spec=F.feature_spec_for(experiment.model), id_dtype=id_dtype, top_n=top_n,
      model_name=model_name)
  module = signatures.ServingModule(model, experiment.model, vocab_dir, serving_spec)

  tf.io.gfile.makedirs(export_base)
  tmp_dir = os.path.join(export_base, f".tmp-{version}-{uuid.uuid4().hex}")
  try:
    logging.info("writing SavedModel (%s ids) to %s", id_dtype, tmp_dir)
    module.save(tmp_dir)
    warmup.write_warmup(warmup.warmup_logs(serving_spec, vocab_dir), tmp_dir)
    with tf.io.gfile.GFile(
        os.path.join(tmp_dir, spec_lib.ASSETS_EXTRA, spec_lib.SPEC_FILE), "w") as f:
      f.write(serving_spec.to_json() + "\n")
    _publish(tmp_dir, final_dir, overwrite)
  finally:
    if tf.io.gfile.exists(tmp_dir):
      tf.io.gfile.rmtree(tmp_dir)
  logging.info("exported version %d to %s", version, final_dir)
  return final_dir


def _publish(tmp_dir: str, final_dir: str, overwrite: bool) -> None:
  """Renames the finished export into place; an old version is replaced only if asked."""
  if not overwrite:
    try:
      tf.io.gfile.rename(tmp_dir, final_dir, overwrite=False)
    except tf.errors.AlreadyExistsError as e:
      raise FileExistsError(f"{final_dir} appeared while exporting; it was left untouched") from e
    return
  retired = f"{tmp_dir}.replaced"
  if tf.io.gfile.exists(final_dir):
    tf.io.gfile.rename(final_dir, retired)
  tf.io.gfile.rename(tmp_dir, final_dir)
  if tf.io.gfile.exists(retired):
    tf.io.gfile.rmtree(retired)


def _main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    export_model(_MODEL_DIR.value, _EXPORT_BASE.value, _VERSION.value, _OVERWRITE.value,
                 _TOP_N.value, _ID_DTYPE.value, _MODEL_NAME.value)
  except (FileExistsError, FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from e


def main() -> None:
  """Console entry point ``dasl-export``."""
  flags.mark_flags_as_required(["model_dir", "export_base"])
  app.run(_main)


if __name__ == "__main__":
  main()
