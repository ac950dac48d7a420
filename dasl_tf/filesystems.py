"""Which filesystem a path lives on: local paths through ``os``, the others through ``tf.io.gfile``.

A path with a scheme (``s3://``, ``hdfs://``, ``az://``, ``gs://``, ``file://``)
goes through ``tf.io.gfile``. TensorFlow reads ``gs://`` and ``file://`` itself;
``s3://``, ``hdfs://``, ``viewfs://``, ``har://`` and ``az://`` are filesystems
of tensorflow-io, registered here (``import tensorflow_io``) the first time a
path of theirs is used. Their compiled libraries load on TensorFlow 2.16 (the
default environment); elsewhere such a path is a :class:`RemotePathError`
that says so.

Local paths never import TensorFlow, so ``dasl-prepare`` keeps running without
it on local data.

tensorflow-io's S3 client aborts while the interpreter tears down ("pure
virtual method called", exit code 134; tensorflow/io#2039). The command-line
tools therefore end through :func:`run_main`, which leaves with ``os._exit``
once every output is flushed when an ``s3://`` path was used.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Callable, Iterator, Optional

from dasl_tf import errors

TENSORFLOW_IO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az")
OBJECT_STORE_SCHEMES = ("s3", "gs", "az")

_schemes_used = set()


class RemotePathError(errors.DaslError, ValueError):
  """A path's filesystem is not available in this environment."""


def scheme(path: str) -> str:
  """The scheme of a path ("s3", "gs", ...), or "" for a local path."""
  return path.split("://", 1)[0].lower() if "://" in path else ""


class LocalFiles:
  """``os`` and ``shutil`` behind the part of ``tf.io.gfile``'s interface the package uses."""

  exists = staticmethod(os.path.exists)
  isdir = staticmethod(os.path.isdir)
  listdir = staticmethod(os.listdir)
  remove = staticmethod(os.remove)
  rmtree = staticmethod(shutil.rmtree)

  @staticmethod
  def makedirs(path: str) -> None:
    os.makedirs(path, exist_ok=True)

  @staticmethod
  def rename(source: str, target: str, overwrite: bool = False) -> None:
    """Renames ``source`` to ``target``, replacing a file there.

    Directories are only renamed to a name that the caller checked is free.
    """
    del overwrite  # os.replace replaces a file, as tf.io.gfile.rename(overwrite=True) does.
    os.replace(source, target)

  @staticmethod
  def GFile(path: str, mode: str):  # pylint: disable=invalid-name
    return open(path, mode, encoding=None if "b" in mode else "utf-8")


class RemoteFiles:
  """``tf.io.gfile``, with directories as object stores have them.

  An object store's bucket exists on its own (``s3://bucket`` cannot be
  created by a path operation), so ``makedirs`` of a bucket root does
  nothing; below it, a directory is a prefix of objects, so ``isdir`` is also
  true of a prefix that holds objects but no directory marker (what a
  renamed directory is on S3).
  """

  def __init__(self, gfile):
    self._gfile = gfile

  def __getattr__(self, name: str):
    return getattr(self._gfile, name)

  def makedirs(self, path: str) -> None:
    if not _is_bucket_root(path):
      self._gfile.makedirs(path)

  def isdir(self, path: str) -> bool:
    if self._gfile.isdir(path):
      return True
    return scheme(path) in OBJECT_STORE_SCHEMES and bool(
        self._gfile.glob(path.rstrip("/") + "/*"))

  def listdir(self, path: str):
    return self._gfile.listdir(path.rstrip("/") + "/" if _is_bucket_root(path) else path)


def _is_bucket_root(path: str) -> bool:
  """Whether a path names an object store's bucket itself (``s3://bucket``)."""
  return scheme(path) in OBJECT_STORE_SCHEMES and "/" not in path.split("://", 1)[1].strip("/")


def files_for(path: str):
  """:class:`LocalFiles` for a local path, else :class:`RemoteFiles` with the path's filesystem.

  Raises:
    RemotePathError: the path's filesystem comes from tensorflow-io, which
      cannot be loaded here.
  """
  path_scheme = scheme(path)
  if not path_scheme:
    return LocalFiles
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if path_scheme in TENSORFLOW_IO_SCHEMES and path_scheme not in _schemes_used:
    try:
      import tensorflow_io  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    except (ImportError, NotImplementedError, OSError) as e:
      raise RemotePathError(
          f"{path}: {path_scheme}:// is a tensorflow-io filesystem, which does not load here "
          f"(TensorFlow {tf.__version__}; tensorflow-io's filesystems need TensorFlow 2.16, the "
          f"default environment of dasl_tf): {e}") from e
  _schemes_used.add(path_scheme)
  return RemoteFiles(tf.io.gfile)


def register(*paths: Optional[str]) -> None:
  """Makes the filesystems of ``paths`` usable by TensorFlow (``tf.data``, checkpoints, ...).

  Raises:
    RemotePathError: as :func:`files_for`.
  """
  for path in paths:
    if path and scheme(path):
      files_for(path)


def open_file(path: str, mode: str = "r"):
  """Opens a local or remote file (text modes as UTF-8)."""
  return files_for(path).GFile(path, mode)


def file_size(path: str) -> int:
  """Size of a local or remote file, in bytes."""
  if not scheme(path):
    return os.path.getsize(path)
  return files_for(path).stat(path).length


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """A local path holding the file at ``path``: the path itself, or a temporary copy."""
  if not scheme(path):
    yield path
    return
  directory = tempfile.mkdtemp(prefix="dasl_tf-input-")
  try:
    local = os.path.join(directory, os.path.basename(path.rstrip("/")))
    files_for(path).copy(path, local, overwrite=True)
    yield local
  finally:
    shutil.rmtree(directory, ignore_errors=True)


def run_main(main: Callable[[], None]) -> None:
  """Runs a command-line ``main`` and exits with its status.

  After an ``s3://`` path was used, exits with ``os._exit`` once stdout and
  stderr are flushed, skipping the static destructors in which tensorflow-io's
  S3 client aborts.
  """
  try:
    main()
    status = 0
  except SystemExit as e:
    status = e.code
  if "s3" not in _schemes_used:
    sys.exit(status)
  if status is not None and not isinstance(status, int):
    print(status, file=sys.stderr)
    status = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status or 0)  # pylint: disable=protected-access
