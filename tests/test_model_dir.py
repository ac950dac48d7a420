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
    assert open(lock).read().split() == [socket.gethostname(), str(os.getpid()),
                                         _start_ticks(os.getpid()), _boot_id()]
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


def _start_ticks(pid):
  """Field 22 of /proc/<pid>/stat, counted after the parenthesised command name."""
  with open(f"/proc/{pid}/stat") as f:
    after_name = f.read().rsplit(")", 1)[1].split()
  return after_name[22 - 3]


def _boot_id():
  with open("/proc/sys/kernel/random/boot_id") as f:
    return f.read().strip()


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/stat"),
                                reason="process start times come from /proc")


def _plant_lock(tmp_path, *fields, age_seconds=0):
  model_dir = tmp_path / "run"
  model_dir.mkdir(exist_ok=True)
  lock = model_dir / model_dir_lib.LOCK_FILE
  lock.write_text(" ".join(map(str, fields)) + "\n")
  if age_seconds:
    written = os.stat(lock).st_mtime - age_seconds
    os.utime(lock, (written, written))
  return str(model_dir), lock


def _taken_over(model_dir, lock):
  with model_dir_lib.run_lock(model_dir):
    assert lock.read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]
  return not lock.exists()


@needs_proc
def test_a_live_pid_with_another_start_time_is_a_stale_lock(tmp_path):
  """The lock's pid was reused by a live process (here: this test's parent) started later."""
  parent = os.getppid()
  model_dir, lock = _plant_lock(tmp_path, socket.gethostname(), parent, _start_ticks(parent),
                                _boot_id())
  with pytest.raises(model_dir_lib.ModelDirError,
                     match=rf"in use by another run \(process {parent} on "
                           rf"{socket.gethostname()}, {lock}\)"):
    with model_dir_lib.run_lock(model_dir):
      pass
  assert lock.read_text().split()[1] == str(parent)
  model_dir, lock = _plant_lock(tmp_path, socket.gethostname(), parent,
                                int(_start_ticks(parent)) + 1, _boot_id())
  assert _taken_over(model_dir, lock)


def test_an_old_format_lock_of_a_live_process_is_still_honoured(tmp_path):
  parent = os.getppid()
  model_dir, lock = _plant_lock(tmp_path, socket.gethostname(), parent)
  with pytest.raises(model_dir_lib.ModelDirError, match=rf"in use by another run \(process "
                     rf"{parent} on {socket.gethostname()}, {lock}\); wait for it to finish"):
    with model_dir_lib.run_lock(model_dir):
      pass
  assert lock.read_text() == f"{socket.gethostname()} {parent}\n"


@needs_proc
def test_a_lock_from_before_a_reboot_is_stale(tmp_path):
  parent = os.getppid()
  model_dir, lock = _plant_lock(tmp_path, socket.gethostname(), parent, _start_ticks(parent),
                                "00000000-0000-0000-0000-000000000000")
  assert _taken_over(model_dir, lock)


def test_an_old_format_lock_naming_this_process_is_stale(tmp_path):
  """A restarted container reuses the pid of the killed run: the old lock names this process."""
  model_dir, lock = _plant_lock(tmp_path, socket.gethostname(), os.getpid())
  assert _taken_over(model_dir, lock)


def test_a_fresh_lock_of_another_host_is_refused_naming_host_pid_file_and_the_way_out(tmp_path):
  model_dir, lock = _plant_lock(tmp_path, "other-host", 4242, 99, "boot",
                                age_seconds=model_dir_lib.LOCK_LEASE_SECONDS - 30)
  with pytest.raises(model_dir_lib.ModelDirError) as raised:
    with model_dir_lib.run_lock(model_dir):
      pass
  assert str(raised.value) == (
      f"{model_dir} is in use by another run (process 4242 on other-host, {lock}); wait for it "
      f"to finish, choose another --model_dir, or, if that run is gone, delete {lock} (a lock "
      "of another host untouched for 600 s is taken over)")
  assert lock.read_text() == "other-host 4242 99 boot\n"


@pytest.mark.parametrize("fields", [("other-host", 4242, 99, "boot"), ("other-host", 4242)],
                         ids=["current format", "old format"])
def test_a_lock_of_another_host_untouched_for_longer_than_the_lease_is_stale(tmp_path, fields):
  model_dir, lock = _plant_lock(tmp_path, *fields,
                                age_seconds=model_dir_lib.LOCK_LEASE_SECONDS + 30)
  assert _taken_over(model_dir, lock)


class _StopAfter:
  """A stop event that lets ``rounds`` refresh intervals pass, then stops."""

  def __init__(self, rounds):
    self.rounds = rounds

  def wait(self, timeout):
    assert timeout == model_dir_lib.LOCK_REFRESH_SECONDS
    self.rounds -= 1
    return self.rounds < 0


def test_the_holder_refreshes_its_lock_so_other_hosts_see_it_held(tmp_path):
  _, lock = _plant_lock(tmp_path, "this-host", 1, age_seconds=model_dir_lib.LOCK_LEASE_SECONDS * 2)
  before = os.stat(lock).st_mtime
  model_dir_lib._refresh_lock(str(lock), _StopAfter(1))  # pylint: disable=protected-access
  assert os.stat(lock).st_mtime >= before + model_dir_lib.LOCK_LEASE_SECONDS * 2 - 1


def test_a_lock_taken_over_meanwhile_is_left_to_its_new_holder(tmp_path):
  model_dir = str(tmp_path / "run")
  lock = tmp_path / "run" / model_dir_lib.LOCK_FILE
  with model_dir_lib.run_lock(model_dir):
    lock.write_text("other-host 4242 99 boot\n")
  assert lock.read_text() == "other-host 4242 99 boot\n"


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
