"""The package's one JSON reader and writer: strict when reading, one layout when writing.

Reading (:func:`loads`, :func:`load`) refuses what :mod:`json` lets through
silently: a key repeated in one object (``json`` keeps the last value), and
the constants ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON. A
truncated or otherwise invalid document is reported with its file, line and
column. Every error names the file and is raised as the caller's class
(:class:`~dasl_tf.errors.DataError` by default; configs pass their
``ConfigError``).

Writing (:func:`dumps`) has one layout for every file the package writes:
two-space indents, sorted keys, a trailing newline, and no non-finite number
(the reader would refuse it): write ``null`` for a missing value
(:func:`finite_or_null`).
"""
from __future__ import annotations

import json
import math
from typing import Any, List, Optional, Sequence, Type, Union

from dasl_tf import errors
from dasl_tf import filesystems

_Path = List[Union[str, int]]


class _Repeated:
  """Stands in for an object that repeats a key, up to the document's root.

  ``json`` builds inner objects first, so the object that repeats a key does
  not know where it lies; each enclosing object prepends its key (or list
  index) to :attr:`path`, and :func:`loads` reports the whole path.
  """

  def __init__(self, path: _Path):
    self.path = path


def _repeated_in(value: Any) -> Optional[_Path]:
  """The path of the first repeated key in an already-built value, or None."""
  if isinstance(value, _Repeated):
    return value.path
  if isinstance(value, list):
    for index, item in enumerate(value):
      path = _repeated_in(item)
      if path is not None:
        return [index] + path
  return None


def _object(pairs: Sequence[tuple]) -> Union[dict, _Repeated]:
  """``object_pairs_hook``: a dict, or a :class:`_Repeated` when a key (here or inside) repeats."""
  built = {}
  for key, value in pairs:
    inner = _repeated_in(value)
    if inner is not None:
      return _Repeated([key] + inner)
    if key in built:
      return _Repeated([key])
    built[key] = value
  return built


def _dotted(path: _Path) -> str:
  """``["model", "hidden_units", 0, "x"]`` -> ``model.hidden_units[0].x``."""
  text = ""
  for part in path:
    text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
  return text


class _NonFinite(Exception):
  """A ``NaN``/``Infinity`` constant met while parsing (turned into the caller's error)."""


def _refuse_constant(name: str):
  raise _NonFinite(name)


def loads(text: str, where: str, error: Type[errors.DaslError] = errors.DataError) -> Any:
  """Parses JSON text strictly.

  Args:
    text: the document.
    where: what the text is (a file path), the start of every error message.
    error: the class of the errors raised (a DaslError subclass taking one message).

  Returns:
    The parsed value (objects as dicts, arrays as lists).

  Raises:
    error: the text is not JSON (with its line and column), repeats a key in an
      object (naming the key's path), or holds NaN, Infinity or -Infinity.
  """
  try:
    value = json.loads(text, object_pairs_hook=_object, parse_constant=_refuse_constant)
  except _NonFinite as e:
    raise error(f"{where}: {e} is not a JSON value; write a number, or null for a missing "
                "one") from None
  except json.JSONDecodeError as e:
    ending = " (the file ends early: is it truncated?)" if not text[e.pos:].strip() else ""
    raise error(f"{where}: invalid JSON at line {e.lineno}, column {e.colno}: "
                f"{e.msg}{ending}") from None
  path = _repeated_in(value)
  if path is not None:
    raise error(f"{where}: key {_dotted(path)!r} appears more than once in its object; "
                "keep one")
  return value


def load(path: str, error: Type[errors.DaslError] = errors.DataError) -> Any:
  """Reads a local or remote JSON file strictly (as :func:`loads`, naming ``path``).

  Raises:
    FileNotFoundError: no file at ``path``.
    error: as :func:`loads`; also a file that is not UTF-8 text.
  """
  try:
    with filesystems.open_file(path) as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise error(f"{path}: not UTF-8 text ({e})") from None
  return loads(text, path, error)


def _non_finite_in(value: Any) -> Optional[_Path]:
  """The path of the first NaN or infinite float in ``value``, or None."""
  if isinstance(value, float) and not math.isfinite(value):
    return []
  items = (value.items() if isinstance(value, dict)
           else enumerate(value) if isinstance(value, (list, tuple)) else ())
  for key, item in items:
    path = _non_finite_in(item)
    if path is not None:
      return [key] + path
  return None


def finite_or_null(value: Any) -> Any:
  """``value`` with every NaN or infinite float (at any depth) replaced by None (``null``)."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {key: finite_or_null(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_null(item) for item in value]
  return value


def dumps(value: Any) -> str:
  """The package's JSON layout: indent 2, sorted keys, a trailing newline, finite numbers only.

  Raises:
    ValueError: ``value`` holds a NaN or infinite float (its path is named);
      pass it through :func:`finite_or_null` where a value may be missing.
  """
  path = _non_finite_in(value)
  if path is not None:
    where = _dotted(path) or "the root"
    raise ValueError(f"cannot write a non-finite number as JSON (at {where!r}); write null for "
                     "a missing value (json_io.finite_or_null)")
  return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"
