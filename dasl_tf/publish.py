"""Stage-and-publish: a reader never sees half a file or half a directory.

Every output of the package (prepared datasets, ``config.json``, final weights,
reports, SavedModel versions) is written under a staging name next to its
target and renamed into place when complete.

Local paths go through ``os`` and ``shutil``; paths with a scheme
(``gs://...``, ``s3://...``, ``file://...``) through ``tf.io.gfile``, imported
only for them (:mod:`dasl_tf.filesystems`, which registers tensorflow-io's
filesystems). This module therefore does not import TensorFlow, so
``dasl-prepare``, which runs without it, publishes its output here too.

On a POSIX filesystem a rename is atomic. Object stores (``s3://``, ``gs://``)
have no directory rename: a directory is copied object by object, its marker
file last, then the staged copy is deleted (:func:`_move_directory`), so a
reader can briefly see a partial directory there, but never the marker of an
incomplete one; files are still published whole, because each object is
written in one request.

Replacing a directory (``overwrite``) renames the old one aside (a
``.retired-*`` sibling), renames the new one in, then deletes the old one.
If renaming the new one in fails, the old one is put back. A process killed
in between leaves ``target`` missing and the old directory in the retired
sibling; the next publish to the same target (:func:`remove_leftovers`)
renames it back to ``target`` before anything else, and deletes the
``.staging-*`` siblings of killed runs. Only a directory carrying the
caller's ``marker`` file is ever replaced, so ``--overwrite`` never deletes
what the package did not write. Two processes publishing to the same target
at the same time are not supported: each deletes the other's staging sibling.
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
import uuid
from typing import Iterator, Optional, Union

from dasl_tf import errors
from dasl_tf import filesystems

STAGING_INFIX = ".staging-"
RETIRED_INFIX = ".retired-"


class PublishError(errors.DaslError, ValueError):
  """The target exists and may not be replaced."""


def _split(path: str):
  """``(parent, name, join)`` of ``path``, with the path module of its kind."""
  paths = posixpath if "://" in path else os.path
  path = path.rstrip("/")
  return paths.dirname(path), paths.basename(path), paths.join


def staging_path(path: str) -> str:
  """A fresh staging sibling of ``path``, removed by the next publish to ``path`` if left over."""
  return _sibling(path, STAGING_INFIX)


def _sibling(path: str, infix: str) -> str:
  """A fresh name next to ``path``; later calls sort after earlier ones."""
  parent, name, join = _split(path)
  return join(parent, f"{name}{infix}{time.time_ns():016x}-{uuid.uuid4().hex[:8]}")


def _delete(path: str) -> None:
  files = filesystems.files_for(path)
  if files.isdir(path):
    files.rmtree(path)
  else:
    files.remove(path)


def write_file(path: str, content: Union[str, bytes]) -> None:
  """Writes ``content`` to ``path`` through a staging file and a rename.

  A failed write leaves ``path`` as it was and no staging file.
  """
  files = filesystems.files_for(path)
  remove_leftovers(path)
  staging = _sibling(path, STAGING_INFIX)
  try:
    with files.GFile(staging, "wb" if isinstance(content, bytes) else "w") as f:
      f.write(content)
    files.rename(staging, path, overwrite=True)
  finally:
    if files.exists(staging):
      files.remove(staging)


def write_json(path: str, value) -> None:
  """Writes ``value`` as indented, key-sorted JSON to ``path`` (staged, then renamed)."""
  write_file(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def remove_leftovers(target: str) -> None:
  """Cleans up the siblings of ``target`` that a killed run left.

  When ``target`` is missing but a retired sibling exists (the run was killed
  between renaming the old ``target`` aside and renaming its replacement
  in), the newest retired sibling is renamed back to ``target``. Every other
  staging and retired sibling is deleted.
  """
  parent, name, join = _split(target)
  files = filesystems.files_for(target)
  if not files.isdir(parent or "."):
    return
  leftovers = {infix: sorted(join(parent, entry.rstrip("/"))
                             for entry in files.listdir(parent or ".")
                             if entry.startswith(name + infix))
               for infix in (STAGING_INFIX, RETIRED_INFIX)}
  if leftovers[RETIRED_INFIX] and not files.exists(target):
    files.rename(leftovers[RETIRED_INFIX].pop(), target)
  for path in leftovers[STAGING_INFIX] + leftovers[RETIRED_INFIX]:
    _delete(path)


def check_replaceable(target: str, overwrite: bool, marker: Optional[str],
                      what: str = "output") -> None:
  """Raises unless ``target`` is absent, or may be replaced.

  Args:
    target: the directory to publish to.
    overwrite: whether the caller asked to replace an existing ``target``.
    marker: a file name that every directory this package writes holds; a
      ``target`` without it is never replaced. None to skip that check.
    what: what ``target`` is, for the error message.

  Raises:
    PublishError: ``target`` exists and ``overwrite`` is False, or it lacks ``marker``.
  """
  files = filesystems.files_for(target)
  if not files.exists(target):
    return
  if not overwrite:
    raise PublishError(f"{target} already exists; pass --overwrite to replace the {what}")
  if marker is not None and not files.exists(_split(target)[2](target, marker)):
    raise PublishError(f"{target} exists but is not a {what} written by dasl_tf (it has no "
                       f"{marker}); refusing to replace it even with --overwrite: choose "
                       "another path")


@contextlib.contextmanager
def staged_directory(target: str, overwrite: bool = False,
                     marker: Optional[str] = None, what: str = "output") -> Iterator[str]:
  """Yields a staging directory that replaces ``target`` when the block succeeds.

  On an exception the staging directory is deleted and ``target`` is untouched.

  Args:
    target: the directory to publish.
    overwrite: replace an existing ``target`` (only one that holds ``marker``).
    marker: see :func:`check_replaceable`; the block should write it.
    what: what ``target`` is, for error messages.

  Raises:
    PublishError: see :func:`check_replaceable` (raised before the block runs,
      and again at publish time if ``target`` appeared meanwhile).
  """
  files = filesystems.files_for(target)
  remove_leftovers(target)
  check_replaceable(target, overwrite, marker, what)
  parent = _split(target)[0]
  if parent:
    files.makedirs(parent)
  staging = _sibling(target, STAGING_INFIX)
  files.makedirs(staging)
  try:
    yield staging
    publish_directory(staging, target, overwrite, marker, what)
  finally:
    if files.exists(staging):
      files.rmtree(staging)


def publish_directory(staging: str, target: str, overwrite: bool = False,
                      marker: Optional[str] = None, what: str = "output") -> None:
  """Renames a complete ``staging`` directory to ``target``.

  An existing ``target`` (allowed by :func:`check_replaceable`) is renamed
  aside first, and deleted once the new one is in place; if the new one
  cannot be renamed in, the old one is put back.

  Raises:
    PublishError: see :func:`check_replaceable`, or ``target`` appeared
      after the old one was renamed aside.
  """
  files = filesystems.files_for(target)
  check_replaceable(target, overwrite, marker, what)
  retired = None
  if files.exists(target):
    retired = _sibling(target, RETIRED_INFIX)
    files.rename(target, retired)
  try:
    if files.exists(target):
      raise PublishError(f"{target} appeared while it was being written; left untouched")
    _move_directory(files, staging, target, marker)
  except BaseException:
    if retired is not None and not files.exists(target):
      # If this fails too, the next publish to target restores it (remove_leftovers).
      with contextlib.suppress(Exception):
        files.rename(retired, target)
    raise
  if retired is not None:
    _delete(retired)


def _move_directory(files, source: str, target: str, last: Optional[str]) -> None:
  """Renames a directory; on an object store, copies it with ``last`` copied last.

  An object store has no directory rename: ``tf.io.gfile.rename`` copies the
  objects in listing order, so ``saved_model.pb`` could appear before
  ``variables/`` and a polling TensorFlow Serving load half a version. Here
  every other object is copied first, then the marker, then the source is
  deleted.
  """
  if filesystems.scheme(source) not in filesystems.OBJECT_STORE_SCHEMES:
    files.rename(source, target)
    return
  relative = sorted(_tree_files(files, source, ""), key=lambda name: name == last)
  for name in relative:
    destination = posixpath.join(target, name)
    files.makedirs(posixpath.dirname(destination))
    files.copy(posixpath.join(source, name), destination, overwrite=True)
  files.rmtree(source)


def _tree_files(files, root: str, prefix: str) -> Iterator[str]:
  """Paths relative to ``root`` of every file below ``root/prefix``."""
  for entry in files.listdir(posixpath.join(root, prefix) if prefix else root):
    name = posixpath.join(prefix, entry.rstrip("/")) if prefix else entry.rstrip("/")
    if files.isdir(posixpath.join(root, name)):
      yield from _tree_files(files, root, name)
    else:
      yield name
