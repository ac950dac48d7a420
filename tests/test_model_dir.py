"""The model directory: same data to resume, one run at a time."""
import os
import shutil
import socket
import subprocess
import sys

import pytest

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import features as F
from dasl_tf import model_dir as model_dir_lib
from dasl_tf import training
from tests import test_train_support as support


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  return support.make_dataset_dir(str(tmp_path_factory.mktemp("data")))


def _neighbour(dataset_dir, target, vocab="users.txt"):
  """The same dataset with other raw ids in one vocabulary (same sizes)."""
  shutil.copytree(dataset_dir, target)
  path = os.path.join(target, "vocab", vocab)
  with open(path, encoding="utf-8") as f:
    ids = f.read().split()
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(f"other-{raw}\n" for raw in ids))
  return target


def _prepare(model_dir, data_dir):
  schema = F.DatasetSchema.load(data_dir)
  experiment = config_resolution.resolve_config(schema)
  return model_dir_lib.prepare_model_dir(model_dir, experiment, schema,
                                         os.path.join(data_dir, "vocab"))


def test_a_run_resumes_on_its_own_data_and_refuses_a_neighbours(dataset_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  assert _prepare(model_dir, dataset_dir) is False
  assert _prepare(model_dir, dataset_dir) is False  # same data: resumable
  for vocab in ("users.txt", "items_b.txt"):
    other = _neighbour(dataset_dir, str(tmp_path / f"other_{vocab}"), vocab)
    with pytest.raises(model_dir_lib.ModelDirError,
                       match=rf"{model_dir} holds a run on other data than {other}"):
      _prepare(model_dir, other)


def test_fingerprint_ignores_shards_but_not_sizes(dataset_dir):
  schema = F.DatasetSchema.load(dataset_dir)
  vocab = os.path.join(dataset_dir, "vocab")
  reference = model_dir_lib.data_fingerprint(schema, vocab)
  resharded = F.DatasetSchema(**{**schema.__dict__, "splits": {"train": ("elsewhere",)}})
  assert model_dir_lib.data_fingerprint(resharded, vocab) == reference
  bigger = F.DatasetSchema(**{**schema.__dict__, "num_users": schema.num_users + 1})
  assert model_dir_lib.data_fingerprint(bigger, vocab) != reference


def test_a_second_run_on_a_directory_in_use_is_refused(dataset_dir, tmp_path):
  model_dir = str(tmp_path / "run")
  data = training.TrainingData.from_data_dir(dataset_dir)
  experiment = config_resolution.resolve_config(data.schema)
  lock = os.path.join(model_dir, model_dir_lib.LOCK_FILE)
  with model_dir_lib.run_lock(model_dir):
    assert open(lock).read().split() == [socket.gethostname(), str(os.getpid())]
    with pytest.raises(model_dir_lib.ModelDirError, match=rf"in use by another run \(process "
                       rf"{os.getpid()}"):
      training.train_and_evaluate(experiment, data, model_dir, verbose=0)
  assert not os.path.exists(lock)


def test_the_lock_of_a_process_that_is_gone_is_taken_over(tmp_path):
  finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  lock = model_dir / model_dir_lib.LOCK_FILE
  lock.write_text(f"{socket.gethostname()} {finished.stdout.strip()}\n")
  with model_dir_lib.run_lock(str(model_dir)):
    assert lock.read_text().split()[1] == str(os.getpid())
  assert not lock.exists()


def test_data_without_vocabularies_is_refused_before_training(dataset_dir, tmp_path):
  no_vocab = str(tmp_path / "no_vocab")
  shutil.copytree(dataset_dir, no_vocab)
  shutil.rmtree(os.path.join(no_vocab, "vocab"))
  with pytest.raises(FileNotFoundError, match=rf"{no_vocab} has no vocab/"):
    training.TrainingData.from_data_dir(no_vocab)
  data = training.TrainingData.from_patterns(
      [os.path.join(no_vocab, "train-*")], [os.path.join(no_vocab, "validation-*")],
      [os.path.join(no_vocab, "test-*")], no_vocab)
  experiment = config_resolution.resolve_config(data.schema)
  with pytest.raises(config_lib.ConfigError, match="exporting needs the dataset's vocab/"):
    training.train_and_evaluate(experiment, data, str(tmp_path / "run"),
                                export_fn=lambda model_dir: None, verbose=0)
  assert not os.path.exists(tmp_path / "run")
