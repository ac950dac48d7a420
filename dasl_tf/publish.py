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
Once the new directory is in place the publish has succeeded: if the old one
cannot be deleted, a warning names it and the next publish deletes it.

Symbolic links. A local target that is a symbolic link is published into the
link's target: the directory (or file) it points to is replaced, next to it,
and the link is kept (:func:`_resolve`). Staging and retired siblings carry a
random name (128 bits of ``uuid4``) and are created exclusively, so a name
planted beforehand in a shared writable directory is never written into.
:func:`remove_leftovers` never follows a link: a link named like a sibling is
deleted itself (what it points to is untouched) and never renamed into
place; a sibling owned by another user is skipped with a warning, so it is
neither deleted nor restored.
"""
from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import time
import uuid
from typing import Iterator, Optional, Union


from dasl_tf import errors
from dasl_tf import filesystems
from dasl_tf import json_io

# The standard library's logger (absl shows its records): the config and schema modules
# import this one, and building serving requests imports them, with no network module.
_log = logging.getLogger(__name__)

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
  return _sibling(_resolve(path), STAGING_INFIX)


def _sibling(path: str, infix: str) -> str:
  """A fresh, unguessable name next to ``path``; later calls sort after earlier ones."""
  parent, name, join = _split(path)
  return join(parent, f"{name}{infix}{time.time_ns():016x}-{uuid.uuid4().hex}")


def _local_part(path: str) -> Optional[str]:
  """The local filesystem path of ``path`` (plain or ``file://``); None on other filesystems."""
  kind = filesystems.scheme(path)
  if not kind:
    return path
  return path[len("file://"):] if kind == "file" else None


def _resolve(path: str) -> str:
  """``path``, or, when it is a local symbolic link, the path the link points to.

  Publishing replaces what the link points to and keeps the link, so a
  ``--output_dir`` that is a link to a directory elsewhere stays one.
  """
  local = _local_part(path)
  if local is None or not os.path.islink(local.rstrip("/") or local):
    return path
  real = os.path.realpath(local)
  _log.info("%s is a symbolic link: publishing into its target %s", path, real)
  return real if local == path else "file://" + real


def _delete(path: str) -> None:
  """Deletes a file or a directory tree; a symbolic link is deleted itself, never followed."""
  if _is_link(path):
    os.remove(_local_part(path))
    return
  files = filesystems.files_for(path)
  if files.isdir(path):
    files.rmtree(path)
  else:
    files.remove(path)


def _make_new_directory(path: str) -> None:
  """Creates the directory ``path``; locally, fails if anything (a link too) is there."""
  local = _local_part(path)
  if local is None:
    filesystems.files_for(path).makedirs(path)
  else:
    os.mkdir(local)


def write_file(path: str, content: Union[str, bytes]) -> None:
  """Writes ``content`` to ``path`` through a staging file and a rename.

  A failed write leaves ``path`` as it was and no staging file. A local
  ``path`` that is a symbolic link keeps it: the file it points to is replaced.
  """
  path = _resolve(path)
  files = filesystems.files_for(path)
  remove_leftovers(path)
  staging = _sibling(path, STAGING_INFIX)
  # Locally "x" creates the staging file exclusively (never through a planted link).
  mode = ("w" if filesystems.scheme(path) else "x") + ("b" if isinstance(content, bytes) else "")
  try:
    with files.GFile(staging, mode) as f:
      f.write(content)
    files.rename(staging, path, overwrite=True)
  finally:
    if files.exists(staging):
      files.remove(staging)


def write_json(path: str, value) -> None:
  """Writes ``value`` as JSON (:func:`dasl_tf.json_io.dumps`) to ``path``, staged, then renamed."""
  write_file(path, json_io.dumps(value))


def remove_leftovers(target: str, marker: Optional[str] = None) -> None:
  """Cleans up the siblings of ``target`` that a killed run left.

  When ``target`` is missing but a retired sibling exists (the run was killed
  between renaming the old ``target`` aside and renaming its replacement
  in), the newest retired sibling is renamed back to ``target``: only a
  directory (never a link) of this user that holds ``marker`` (when given).
  Every other staging and retired sibling is deleted; a symbolic link is
  deleted itself, never followed, and a sibling of another user, or one that
  cannot be deleted, is left with a warning.

  Args:
    target: the path a publish is about to write.
    marker: the file every directory published to ``target`` holds, if any.
  """
  target = _resolve(target)
  parent, name, join = _split(target)
  files = filesystems.files_for(target)
  if not files.isdir(parent or "."):
    return
  leftovers = {infix: [] for infix in (STAGING_INFIX, RETIRED_INFIX)}
  for entry in sorted(e.rstrip("/") for e in files.listdir(parent or ".")):
    infix = next((i for i in leftovers if entry.startswith(name + i)), None)
    if infix is not None and _may_touch(join(parent, entry), target):
      leftovers[infix].append(join(parent, entry))
  restorable = [path for path in leftovers[RETIRED_INFIX] if not _is_link(path)
                and files.isdir(path) and (marker is None or files.exists(join(path, marker)))]
  if restorable and not files.exists(target):
    files.rename(restorable[-1], target)
    leftovers[RETIRED_INFIX].remove(restorable[-1])
    _log.warning("%s was missing (a run was killed while replacing it): restored the "
                 "previous copy from %s", target, restorable[-1])
  for path in leftovers[STAGING_INFIX] + leftovers[RETIRED_INFIX]:
    if _is_link(path):
      _log.warning("%s: deleting the symbolic link %s, named like a leftover of a publish "
                   "there (what it points to is untouched)", target, path)
    try:
      _delete(path)
    except OSError as e:
      _log.warning("%s: could not delete the leftover %s (%s); delete it by hand",
                   target, path, e.strerror or e)


def _is_link(path: str) -> bool:
  local = _local_part(path)
  return local is not None and os.path.islink(local)


def _may_touch(path: str, target: str) -> bool:
  """Whether a leftover sibling of ``target`` may be deleted or restored: not another user's."""
  local = _local_part(path)
  if local is None or not hasattr(os, "getuid") or os.lstat(local).st_uid == os.getuid():
    return True
  _log.warning("%s: leaving %s alone: it is named like a leftover of a publish there but "
               "belongs to another user", target, path)
  return False


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
  A local ``target`` that is a symbolic link keeps it: the directory it points
  to is replaced, and the staging directory is made next to that directory.

  Args:
    target: the directory to publish.
    overwrite: replace an existing ``target`` (only one that holds ``marker``).
    marker: see :func:`check_replaceable`; the block should write it.
    what: what ``target`` is, for error messages.

  Raises:
    PublishError: see :func:`check_replaceable` (raised before the block runs,
      and again at publish time if ``target`` appeared meanwhile).
  """
  target = _resolve(target)
  files = filesystems.files_for(target)
  remove_leftovers(target, marker)
  check_replaceable(target, overwrite, marker, what)
  parent = _split(target)[0]
  if parent:
    files.makedirs(parent)
  staging = _sibling(target, STAGING_INFIX)
  _make_new_directory(staging)
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
  aside first, and deleted once the new one is in place (a failure to delete
  it is a warning: the publish has succeeded); if the new one cannot be
  renamed in, the old one is put back. A local ``target`` that is a symbolic
  link is resolved first, as in :func:`staged_directory`.

  Raises:
    PublishError: see :func:`check_replaceable`, or ``target`` appeared
      after the old one was renamed aside.
  """
  target = _resolve(target)
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
    try:
      _delete(retired)
    except Exception as e:  # pylint: disable=broad-except: target is published already.
      _log.warning("published %s, but could not delete the %s it replaced, now at %s (%s); "
                   "the next publish to %s deletes it", target, what, retired, e, target)


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
