"""Stage-and-publish: whole directories and files, the overwrite guard, recovery after a kill.

Every test runs on a plain local path (``os``/``shutil``) and on the same
directory addressed as ``file://...`` (``tf.io.gfile``).
"""
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import filesystems
from dasl_tf import model_io
from dasl_tf import publish

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "done.txt"


class Killed(Exception):
  """Stands for the process dying inside a filesystem call."""


@pytest.fixture(params=["local", "gfile"])
def backend(request, tmp_path):
  """``(parent, files)``: the test directory as the code under test gets it, and the
  file functions that code uses on it."""
  if request.param == "local":
    return str(tmp_path), filesystems.LocalFiles
  return "file://" + str(tmp_path), tf.io.gfile


def _patch(monkeypatch, files, name, function):
  """Replaces the file function ``name`` of ``files`` (a class or a module)."""
  monkeypatch.setattr(files, name,
                      staticmethod(function) if isinstance(files, type) else function)


def _local(path):
  return path[len("file://"):] if path.startswith("file://") else path


def _tree(path):
  """``{relative path: bytes}`` of every file under ``path``."""
  root = _local(path)
  return {os.path.relpath(os.path.join(d, name), root): open(os.path.join(d, name), "rb").read()
          for d, _, names in os.walk(root) for name in names}


def _write(directory, files):
  for name, content in files.items():
    path = os.path.join(_local(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(content)


def _publish(target, files, **kwargs):
  with publish.staged_directory(target, **kwargs) as staging:
    _write(staging, files)


def _siblings(target):
  local = _local(target)
  return sorted(os.listdir(os.path.dirname(local)))


OLD = {MARKER: b"", "weights": b"old weights", "nested/part-0": b"old part"}
NEW = {MARKER: b"", "weights": b"new weights", "extra": b"only in the new one"}


def _rename_dies_from_call(monkeypatch, files, first_failing_call, *, recovers=False):
  """Makes the ``first_failing_call``-th rename of ``files`` raise :class:`Killed`.

  Later renames raise too unless ``recovers``: a killed process renames nothing more.
  """
  real = files.rename
  calls = []

  def rename(source, target, overwrite=False):
    calls.append(source)
    if len(calls) == first_failing_call or (len(calls) > first_failing_call and not recovers):
      raise Killed(f"killed while renaming {source}")
    return real(source, target, overwrite=overwrite)

  _patch(monkeypatch, files, "rename", rename)


def test_published_directory_holds_every_file_and_no_staging_sibling(backend):
  parent, _ = backend
  target = parent + "/out"
  _publish(target, OLD)
  assert _tree(target) == OLD
  assert _siblings(target) == ["out"]


def test_missing_parents_are_created(backend):
  parent, _ = backend
  target = parent + "/a/b/out"
  _publish(target, {"x": b"1"})
  assert _tree(target) == {"x": b"1"}


def test_an_exception_in_the_block_leaves_the_old_target_and_no_staging(backend):
  parent, _ = backend
  target = parent + "/out"
  _publish(target, OLD)
  with pytest.raises(RuntimeError, match="half-way"):
    with publish.staged_directory(target, overwrite=True, marker=MARKER) as staging:
      _write(staging, {"weights": b"partial"})
      raise RuntimeError("failed half-way")
  assert _tree(target) == OLD
  assert _siblings(target) == ["out"]


def test_an_exception_in_the_block_leaves_no_new_target(backend):
  parent, _ = backend
  target = parent + "/out"
  with pytest.raises(RuntimeError):
    with publish.staged_directory(target):
      raise RuntimeError("failed")
  assert _siblings(target) == []


def test_an_existing_target_needs_overwrite(backend):
  parent, _ = backend
  target = parent + "/out"
  _publish(target, OLD)
  with pytest.raises(publish.PublishError, match=r"out already exists; pass --overwrite"):
    _publish(target, NEW, marker=MARKER)
  assert _tree(target) == OLD


def test_overwrite_replaces_a_marked_target_whole(backend):
  parent, _ = backend
  target = parent + "/out"
  _publish(target, OLD)
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(target) == NEW
  assert _siblings(target) == ["out"]


def test_overwrite_never_replaces_a_directory_without_the_marker(backend):
  """The guard that keeps ``--overwrite`` from deleting a user's files."""
  parent, _ = backend
  target = parent + "/home"
  users_files = {"thesis.tex": b"years of work", "data/raw.csv": b"1,2,3"}
  _write(target, users_files)
  entered = []
  with pytest.raises(publish.PublishError, match=r"home exists but is not a dataset written "
                     r"by dasl_tf \(it has no done.txt\)"):
    with publish.staged_directory(target, overwrite=True, marker=MARKER, what="dataset"):
      entered.append(True)
  assert not entered, "the block ran although the target may not be replaced"
  assert _tree(target) == users_files
  assert _siblings(target) == ["home"]


def test_a_file_at_the_target_is_not_replaced_by_a_marked_publish(backend):
  parent, _ = backend
  target = parent + "/out"
  _write(parent, {"out": b"a file"})
  with pytest.raises(publish.PublishError, match="no done.txt"):
    _publish(target, NEW, overwrite=True, marker=MARKER)
  assert open(_local(target), "rb").read() == b"a file"


def test_leftover_siblings_of_a_killed_run_are_removed(backend):
  parent, _ = backend
  target = parent + "/out"
  _publish(target, OLD)
  _write(parent, {"out.staging-0000000000000001-deadbeef/weights": b"half",
                  "out.retired-0000000000000001-deadbeef/weights": b"older",
                  "out.staging-0000000000000002-deadbeef": b"a staged file",
                  "out2.staging-1/keep": b"another target's", "out_user/keep": b"unrelated"})
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(target) == NEW
  assert _siblings(target) == ["out", "out2.staging-1", "out_user"]


@pytest.mark.parametrize("recovers", [True, False])
def test_a_failure_between_retiring_and_renaming_in_keeps_the_old_directory(
    backend, monkeypatch, recovers):
  """The second rename (staging -> target) fails after the old target was renamed aside.

  If renaming still works (``recovers``), the old directory is put back at once;
  if not (the process is dying), it waits in the retired sibling, and the next
  publish renames it back to the target before doing anything else.
  """
  parent, files = backend
  target = parent + "/out"
  _publish(target, OLD)
  with monkeypatch.context() as patch:
    _rename_dies_from_call(patch, files, 2, recovers=recovers)
    with pytest.raises(Killed):
      _publish(target, NEW, overwrite=True, marker=MARKER)
  if recovers:
    assert _tree(target) == OLD and _siblings(target) == ["out"]
    return
  [retired] = _siblings(target)
  assert retired.startswith("out.retired-")
  assert _tree(os.path.join(parent, retired)) == OLD
  with pytest.raises(RuntimeError):  # the next run fails too: the old directory is back
    with publish.staged_directory(target, overwrite=True, marker=MARKER):
      raise RuntimeError("failed")
  assert _tree(target) == OLD and _siblings(target) == ["out"]
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(target) == NEW and _siblings(target) == ["out"]


def test_a_process_killed_between_retiring_and_renaming_in_is_recovered(tmp_path):
  """A real SIGKILL: the old directory and the staged one stay as siblings, target is missing.

  The next publish restores the old directory to the target, deletes the
  staged one, and then replaces the target as asked.
  """
  target = str(tmp_path / "out")
  _publish(target, OLD)
  script = textwrap.dedent("""
      import os, signal, sys
      from dasl_tf import filesystems, publish
      real, calls = filesystems.LocalFiles.rename, []
      def rename(source, target, overwrite=False):
        calls.append(source)
        if len(calls) == 2:
          os.kill(os.getpid(), signal.SIGKILL)
        real(source, target, overwrite)
      filesystems.LocalFiles.rename = staticmethod(rename)
      assert "tensorflow" not in sys.modules
      with publish.staged_directory(sys.argv[1], overwrite=True, marker="done.txt") as staging:
        for name in ("done.txt", "weights"):
          open(os.path.join(staging, name), "w").write("new")
      """)
  proc = subprocess.run([sys.executable, "-c", script, target], cwd=REPO_ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  left = _siblings(target)
  assert [name.split("-")[0] for name in left] == ["out.retired", "out.staging"], left
  assert _tree(str(tmp_path / left[0])) == OLD
  publish.remove_leftovers(target)
  assert _tree(target) == OLD and _siblings(target) == ["out"]
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(target) == NEW


def test_write_file_replaces_text_and_bytes(backend):
  parent, _ = backend
  path = parent + "/config.json"
  publish.write_file(path, "text é\n")
  assert open(_local(path), encoding="utf-8").read() == "text é\n"
  publish.write_file(path, b"\x00\xff")
  assert open(_local(path), "rb").read() == b"\x00\xff"
  publish.write_json(path, {"b": [1, 2], "a": 1})
  assert open(_local(path)).read() == '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n'
  assert _siblings(path) == ["config.json"]


class _DiesHalfWay:
  """A writable file that writes half of what it is given, then raises."""

  def __init__(self, handle):
    self._handle = handle

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self._handle.close()

  def write(self, content):
    self._handle.write(content[:len(content) // 2])
    self._handle.flush()
    raise Killed("disk full")


@pytest.mark.parametrize("fails", ["write", "rename"])
def test_write_file_never_leaves_a_partial_file(backend, monkeypatch, fails):
  parent, files = backend
  path = parent + "/metrics.json"
  publish.write_file(path, "old and complete")
  with monkeypatch.context() as patch:
    if fails == "write":
      real = files.GFile
      _patch(patch, files, "GFile", lambda p, mode: _DiesHalfWay(real(p, mode)))
    else:
      _rename_dies_from_call(patch, files, 1, recovers=True)
    with pytest.raises(Killed):
      publish.write_file(path, "new " * 1000)
  assert open(_local(path)).read() == "old and complete"
  assert _siblings(path) == ["metrics.json"]


def test_a_staging_file_of_a_killed_write_is_removed_by_the_next(backend):
  parent, _ = backend
  path = parent + "/config.json"
  _write(parent, {"config.json.staging-0000000000000001-deadbeef": b"{\"half"})
  publish.write_file(path, "{}")
  assert _siblings(path) == ["config.json"]


# ----------------------------------------------------------------------------- links, planted names


def _link(link, points_to):
  os.symlink(_local(points_to), _local(link))


def test_overwrite_through_a_symlink_replaces_the_linked_directory_and_keeps_the_link(backend):
  """``out -> elsewhere/real``: the new directory goes to ``real``, ``out`` stays the link."""
  parent, _ = backend
  real, target = parent + "/elsewhere/real", parent + "/out"
  _write(real, OLD)
  _link(target, real)
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert os.path.islink(_local(target))
  assert os.readlink(_local(target)) == _local(real)
  assert _tree(real) == NEW
  assert _siblings(target) == ["elsewhere", "out"]
  assert _siblings(real) == ["real"]


def test_a_symlink_without_the_marker_behind_it_is_never_replaced(backend):
  parent, _ = backend
  real, target = parent + "/home", parent + "/out"
  _write(real, {"thesis.tex": b"years of work"})
  _link(target, real)
  with pytest.raises(publish.PublishError, match=r"home exists but is not a output written"):
    _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(real) == {"thesis.tex": b"years of work"}
  assert os.path.islink(_local(target))


def test_write_file_through_a_symlink_replaces_the_linked_file(backend):
  parent, _ = backend
  real, path = parent + "/real.json", parent + "/config.json"
  _write(parent, {"real.json": b"old"})
  _link(path, real)
  publish.write_file(path, "new")
  assert os.path.islink(_local(path))
  assert open(_local(real)).read() == "new"
  assert _siblings(path) == ["config.json", "real.json"]


def test_a_planted_staging_symlink_is_removed_itself_and_what_it_points_to_is_kept(backend):
  parent, _ = backend
  target, victim = parent + "/out", parent + "/victim"
  _write(victim, {"precious": b"keep"})
  _link(target + publish.STAGING_INFIX + "0000000000000001-planted", victim)
  _link(target + publish.STAGING_INFIX + "0000000000000002-planted",
        parent + "/victim/precious")
  _publish(target, NEW, marker=MARKER)
  assert _tree(target) == NEW
  assert _tree(victim) == {"precious": b"keep"}
  assert _siblings(target) == ["out", "victim"]


def test_a_planted_retired_symlink_is_never_renamed_into_place(backend):
  """Target missing, ``out.retired-* -> attacker``: the link is not restored as the output."""
  parent, _ = backend
  target, attacker = parent + "/out", parent + "/attacker"
  _write(attacker, {MARKER: b"", "weights": b"poisoned"})
  _link(target + publish.RETIRED_INFIX + "ffffffffffffffff-planted", attacker)
  _publish(target, NEW, marker=MARKER)
  assert not os.path.islink(_local(target))
  assert _tree(target) == NEW
  assert _tree(attacker) == {MARKER: b"", "weights": b"poisoned"}
  assert _siblings(target) == ["attacker", "out"]


def test_a_retired_sibling_without_the_marker_is_not_restored(backend):
  parent, _ = backend
  target = parent + "/out"
  _write(target + publish.RETIRED_INFIX + "ffffffffffffffff-planted", {"weights": b"poisoned"})
  _publish(target, NEW, marker=MARKER)
  assert _tree(target) == NEW
  assert _siblings(target) == ["out"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a file to another user needs root")
def test_a_retired_sibling_of_another_user_is_neither_restored_nor_deleted(backend):
  parent, _ = backend
  target = parent + "/out"
  planted = target + publish.RETIRED_INFIX + "ffffffffffffffff-planted"
  _write(planted, {MARKER: b"", "weights": b"poisoned"})
  for directory, _, names in os.walk(_local(planted)):
    for path in [directory] + [os.path.join(directory, name) for name in names]:
      os.chown(path, 54321, 54321)
  _publish(target, NEW, marker=MARKER)
  assert _tree(target) == NEW
  assert _tree(planted) == {MARKER: b"", "weights": b"poisoned"}


def test_staging_names_are_unguessable(tmp_path):
  names = {publish.staging_path(str(tmp_path / "out")) for _ in range(3)}
  assert len(names) == 3
  for name in names:
    random_part = name.rsplit("-", 1)[1]
    assert len(random_part) == 32 and int(random_part, 16) >= 0


def test_a_staging_name_that_is_taken_is_never_written_into(tmp_path, monkeypatch):
  """Were the random name guessed and planted as a link, publishing fails and writes nowhere."""
  monkeypatch.setattr(publish.time, "time_ns", lambda: 1)
  monkeypatch.setattr(publish.uuid, "uuid4", lambda: uuid.UUID(int=7))
  victim = tmp_path / "victim"
  victim.mkdir()
  real_remove_leftovers = publish.remove_leftovers

  def plant_after_cleanup(path, marker=None):
    """remove_leftovers deletes links named like siblings: plant the next name after it."""
    real_remove_leftovers(path, marker)
    os.symlink(victim / "stolen", f"{path}{publish.STAGING_INFIX}{1:016x}-{uuid.UUID(int=7).hex}")

  monkeypatch.setattr(publish, "remove_leftovers", plant_after_cleanup)
  (victim / "stolen").mkdir()
  with pytest.raises(FileExistsError):
    _publish(str(tmp_path / "out"), NEW, marker=MARKER)
  assert not (tmp_path / "out").exists()
  (victim / "stolen").rmdir()
  with pytest.raises(FileExistsError):
    publish.write_file(str(tmp_path / "config.json"), "{}")
  assert os.listdir(victim) == []
  assert not (tmp_path / "config.json").exists()


def test_a_retired_copy_that_cannot_be_deleted_is_a_warning_not_a_failure(backend, monkeypatch):
  parent, files = backend
  target = parent + "/out"
  _publish(target, OLD)
  real_rmtree = files.rmtree

  def rmtree(path, *args, **kwargs):
    if publish.RETIRED_INFIX in path:
      raise PermissionError(13, "Permission denied", path)
    return real_rmtree(path, *args, **kwargs)

  _patch(monkeypatch, files, "rmtree", rmtree)
  _publish(target, NEW, overwrite=True, marker=MARKER)
  assert _tree(target) == NEW
  [_, retired] = _siblings(target)
  assert retired.startswith("out.retired-")
  monkeypatch.undo()
  _publish(target, OLD, overwrite=True, marker=MARKER)  # the next publish deletes it
  assert _tree(target) == OLD and _siblings(target) == ["out"]


# ----------------------------------------------------------------------------- callers


def test_config_save_publishes_the_file_whole(tmp_path):
  path = str(tmp_path / "config.json")
  experiment = config_lib.ExperimentConfig()
  experiment.save(path)
  assert config_lib.ExperimentConfig.load(path) == experiment
  assert _siblings(path) == ["config.json"]


def test_final_weights_replace_the_previous_ones_but_never_a_foreign_directory(tmp_path):
  model = model_io.build_model(config_lib.ModelConfig(
      variant="dasl", num_users=6, num_items_a=8, num_items_b=8, history_length=3,
      embedding_dim=4, gru_units=4, attention_dim=4, hidden_units=(4,)))
  model_io.save_final_weights(model, str(tmp_path / "run"))
  _write(str(tmp_path / "run" / "final"), {"stale": b"from an earlier save"})
  model_io.save_final_weights(model, str(tmp_path / "run"))
  assert sorted(os.listdir(tmp_path / "run")) == ["final"]
  assert "stale" not in os.listdir(tmp_path / "run" / "final")
  assert "weights.index" in os.listdir(tmp_path / "run" / "final")

  _write(str(tmp_path / "mine" / "final"), {"notes.txt": b"keep me"})
  with pytest.raises(publish.PublishError, match="not a final-weights directory"):
    model_io.save_final_weights(model, str(tmp_path / "mine"))
  assert _tree(str(tmp_path / "mine")) == {"final/notes.txt": b"keep me"}


class _LocalBucket:
  """The object-store calls ``publish`` makes, on a local folder standing for ``s3://bucket``."""

  def __init__(self, root):
    self.root, self.copied = root, []

  def _local(self, path):
    return os.path.join(self.root, path.split("://", 1)[1])

  def listdir(self, path):
    return os.listdir(self._local(path))

  def isdir(self, path):
    return os.path.isdir(self._local(path))

  def makedirs(self, path):
    os.makedirs(self._local(path), exist_ok=True)

  def copy(self, source, target, overwrite=False):
    assert overwrite
    self.copied.append(os.path.relpath(self._local(target), self._local("s3://bucket/1")))
    with open(self._local(source), "rb") as f, open(self._local(target), "wb") as g:
      g.write(f.read())

  def rmtree(self, path):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(self._local(path))


def test_on_an_object_store_the_marker_is_copied_after_everything_else(tmp_path):
  """S3 has no directory rename: TF Serving must not see saved_model.pb before variables/."""
  bucket = _LocalBucket(str(tmp_path))
  staging = tmp_path / "bucket" / "1.staging-x"
  for name in ("assets/users.txt", "saved_model.pb", "variables/variables.index",
               "variables/variables.data-00000-of-00001", "fingerprint.pb"):
    (staging / name).parent.mkdir(parents=True, exist_ok=True)
    (staging / name).write_text(name)
  publish._move_directory(bucket, "s3://bucket/1.staging-x", "s3://bucket/1",  # pylint: disable=protected-access
                          "saved_model.pb")
  assert bucket.copied[-1] == "saved_model.pb"
  assert sorted(bucket.copied) == sorted(
      ["assets/users.txt", "fingerprint.pb", "saved_model.pb", "variables/variables.index",
       "variables/variables.data-00000-of-00001"])
  assert (tmp_path / "bucket" / "1" / "variables" / "variables.index").read_text() == (
      "variables/variables.index")
  assert not staging.exists()
