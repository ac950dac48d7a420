"""``dasl-export``: a trained model directory -> a versioned SavedModel for TensorFlow Serving.

Usage::

  dasl-export --model_dir runs/dasl --export_base exports/dasl [--version N] [--overwrite]

writes ``exports/dasl/<N>/`` (default: one more than the highest existing
integer version, or 1) with

* ``saved_model.pb`` + ``variables/``: the ``serving_default`` (raw-id
  ``tf.Example``), ``serving_indices``, ``predict``, ``recommend``, ``regress``
  and ``classify`` signatures (:mod:`dasl_tf.serving.signatures`), standard ops
  only;
* ``assets/``: the raw-id vocabularies the ``predict``/``recommend`` lookups read
  (``users.txt`` and ``items_a.txt``, ``items_b.txt``, ... one per domain of
  the model, K >= 2);
* ``assets.extra/tf_serving_warmup_requests``: warmup ``PredictionLog`` records;
* ``assets.extra/serving_spec.json``: the request contract for clients.

The version is written to a staging sibling (``<N>.staging-*``, which TensorFlow
Serving ignores: it is not an integer) and renamed into place by
:mod:`dasl_tf.publish`, so TensorFlow Serving never sees half a version, and
a failed or killed export leaves any existing version as it was. An existing
version is never replaced unless ``--overwrite`` is given, and then only one
that holds a ``saved_model.pb``. The model directory is only read.
"""
from __future__ import annotations

import os
from typing import List, Optional

from absl import flags
from absl import logging

from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (first: TFRS needs Keras 2)
import tensorflow as tf

from dasl_tf import features as F
from dasl_tf import config as config_lib
from dasl_tf import filesystems
from dasl_tf import model_io
from dasl_tf import publish
from dasl_tf.pipelines import cli
from dasl_tf.serving import signatures
from dasl_tf.serving import spec as spec_lib
from dasl_tf.serving import warmup

FLAGS = flags.FLAGS
# TensorFlow Serving versions are int64.
MAX_VERSION = 2**63 - 1


def define_flags() -> None:
  """Defines the flags of ``dasl-export``."""
  with cli.key_flags():
    flags.DEFINE_string("model_dir", None, "trained model directory (dasl-train output)")
    flags.DEFINE_string("export_base", None, "base path served by TensorFlow Serving; "
                        "versions are its subdirectories")
    flags.DEFINE_integer("version", None, "version number; default: one more than the "
                         "highest existing version")
    flags.DEFINE_bool("overwrite", False, "replace an existing version")
    flags.DEFINE_integer("top_n", 10, "items returned per user by the recommend signature")
    flags.DEFINE_enum("id_dtype", "auto", ("auto",) + spec_lib.ID_DTYPES,
                      "dtype of raw ids in predict/recommend; auto: int64 when every "
                      "vocabulary entry is an integer")
    flags.DEFINE_string("model_name", "dasl", "name the model is served under (warmup "
                        "requests and clients use it)")
    flags.DEFINE_integer("candidates_per_request", spec_lib.DEFAULT_CANDIDATES_PER_REQUEST,
                         "recommend: the width clients pad candidate lists to, so that "
                         "TensorFlow Serving can batch any two requests")
    flags.DEFINE_bool("jit_compile", False, "compile the model's functions with XLA (faster "
                      "on CPU; TensorFlow Serving then needs --xla_cpu_compilation_enabled=true)")
  flags.mark_flags_as_required(["model_dir", "export_base"])


def existing_versions(export_base: str) -> list:
  """The integer version directories under ``export_base``, ascending."""
  files = filesystems.files_for(export_base)
  if not files.isdir(export_base):
    return []
  names = [name.rstrip("/") for name in files.listdir(export_base)]
  return sorted(int(name) for name in names if name.isdigit())


def export_model(model_dir: str, export_base: str, version: Optional[int] = None,
                 overwrite: bool = False, top_n: int = 10, id_dtype: str = "auto",
                 model_name: str = "dasl",
                 candidates_per_request: int = spec_lib.DEFAULT_CANDIDATES_PER_REQUEST,
                 jit_compile: bool = False) -> str:
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
    candidates_per_request: the candidate-list width of ``recommend`` requests
      (see :class:`~dasl_tf.serving.spec.ServingSpec`).
    jit_compile: mark the model's functions for XLA (:class:`~dasl_tf.serving.
      signatures.ServingModule`); the warmup requests compile their shapes at load.

  Returns:
    The path of the written version directory.

  Raises:
    FileExistsError: the version exists and ``overwrite`` is False, or it
      holds no ``saved_model.pb`` (then it is never replaced).
    FileNotFoundError: ``model_dir`` holds no finished model.
    ConfigError: a version outside [1, 2**63 - 1].
    DataError: vocabularies that do not match the model, or a top_n or
      candidates_per_request below 1.
  Each is raised before anything is written under ``export_base``.
  """
  filesystems.register(model_dir, export_base)
  if version is None:
    version = (existing_versions(export_base) or [0])[-1] + 1
  if not 1 <= version <= MAX_VERSION:
    raise config_lib.ConfigError(f"version must be an integer from 1 to {MAX_VERSION} "
                                 f"(TensorFlow Serving versions are int64), got {version}")
  model, experiment, _ = model_io.load_model(model_dir)
  vocab_dir = os.path.join(model_dir, model_io.VOCAB_DIR)
  if id_dtype == "auto":
    id_dtype = signatures.infer_id_dtype(vocab_dir, experiment.model.num_domains)
  serving_spec = spec_lib.ServingSpec(
      feature_spec=F.feature_spec_for(experiment.model), id_dtype=id_dtype, top_n=top_n,
      model_name=model_name, candidates_per_request=candidates_per_request)
  module = signatures.ServingModule(model, experiment.model, vocab_dir, serving_spec,
                                    jit_compile=jit_compile)
  final_dir = os.path.join(export_base, str(version))
  try:
    with publish.staged_directory(
        final_dir, overwrite, marker=tf.saved_model.SAVED_MODEL_FILENAME_PB,
        what="SavedModel version") as staging_dir:
      _write_version(module, serving_spec, vocab_dir, staging_dir)
  except publish.PublishError as e:
    raise FileExistsError(str(e)) from e
  logging.info("exported version %d to %s", version, final_dir)
  if jit_compile:
    logging.info("%s uses XLA: run tensorflow_model_server with "
                 "--xla_cpu_compilation_enabled=true on CPU", final_dir)
  return final_dir


def _write_version(module: signatures.ServingModule, serving_spec: spec_lib.ServingSpec,
                   vocab_dir: str, export_dir: str) -> None:
  """Writes the SavedModel, warmup requests and serving spec of ``module`` to ``export_dir``."""
  logging.info("writing SavedModel (%s ids) to %s", serving_spec.id_dtype, export_dir)
  module.save(export_dir)
  warmup.write_warmup(warmup.warmup_logs(serving_spec, vocab_dir), export_dir)
  with filesystems.open_file(
      os.path.join(export_dir, spec_lib.ASSETS_EXTRA, spec_lib.SPEC_FILE), "w") as f:
    f.write(serving_spec.to_json())


def _main(argv: List[str]) -> None:
  cli.no_arguments(argv)
  export_model(FLAGS.model_dir, FLAGS.export_base, FLAGS.version, FLAGS.overwrite,
               FLAGS.top_n, FLAGS.id_dtype, FLAGS.model_name, FLAGS.candidates_per_request,
               FLAGS.jit_compile)


def main() -> None:
  """Console entry point ``dasl-export``."""
  define_flags()
  cli.run_command("dasl-export", _main)


if __name__ == "__main__":
  main()
