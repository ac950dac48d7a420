"""Source-wide contracts: one file-access layer, one TFRecord reader, one error base, one runner."""
import ast
import pathlib

import pytest

from dasl_tf import errors
from tests.conftest import REPO_ROOT

SOURCES = sorted(p for folder in ("dasl_tf", "pipelines", "serving")
                 for p in (REPO_ROOT / folder).rglob("*.py"))
# The one module that may call tf.io.gfile, and the demo's script for a fresh process that
# imports TensorFlow alone (not dasl_tf), held in a string.
GFILE_ALLOWED = {REPO_ROOT / "dasl_tf" / "filesystems.py"}


def _calls(path: pathlib.Path):
  """Every dotted call target (``tf.io.gfile.exists``) in a source file, with its line."""
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Call):
      parts, target = [], node.func
      while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
      if isinstance(target, ast.Name):
        yield ".".join([target.id] + parts[::-1]), node.lineno


def test_every_file_access_goes_through_dasl_tf_filesystems():
  direct = [f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
            for path in SOURCES if path not in GFILE_ALLOWED
            for name, line in _calls(path) if name.startswith("tf.io.gfile.")]
  assert not direct, direct


# The modules that open TFRecord files: the data layer (make_dataset, the shard check and
# peek), and the warmup-record writer's own reader of what it wrote.
TFRECORD_READERS = {REPO_ROOT / "dasl_tf" / "data.py", REPO_ROOT / "serving" / "warmup.py"}


def test_every_tfrecord_read_goes_through_the_data_layer():
  """So that counting make_dataset and the shard check counts every read of a split."""
  direct = [f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
            for path in SOURCES if path not in TFRECORD_READERS
            for name, line in _calls(path) if name.endswith("TFRecordDataset")]
  assert not direct, direct


def _raised_system_exits(path: pathlib.Path):
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
      func = node.exc.func
      if isinstance(func, ast.Name) and func.id == "SystemExit":
        yield node.lineno


def test_no_command_exits_with_a_message_of_its_own():
  """Commands end through cli.run_command / cli.fail, never sys.exit("...") or SystemExit."""
  found = []
  for path in SOURCES:
    found += [f"{path.relative_to(REPO_ROOT)}:{line}: SystemExit"
              for line in _raised_system_exits(path)]
    found += [f"{path.relative_to(REPO_ROOT)}:{line}: {name}" for name, line in _calls(path)
              if name == "sys.exit" and path.name != "cli.py" and path.name != "filesystems.py"]
  assert not found, found


@pytest.mark.parametrize("module, name", [
    ("dasl_tf.config", "ConfigError"), ("dasl_tf.model_dir", "ModelDirError"),
    ("dasl_tf.publish", "PublishError"), ("dasl_tf.training", "TrainingDivergedError"),
    ("dasl_tf.data", "CorruptRecordsError"), ("dasl_tf.filesystems", "RemotePathError"),
    ("dasl_tf.prepare.config", "PrepareError"), ("dasl_tf.serving.client", "ServingError"),
    ("dasl_tf.serving.requests", "RequestError"),
])
def test_every_error_class_derives_from_the_common_base(module, name):
  import importlib  # pylint: disable=g-import-not-at-top

  assert issubclass(getattr(importlib.import_module(module), name), errors.DaslError)
