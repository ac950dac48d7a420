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

An ``s3://`` path is first checked against the object store's endpoint
(:func:`check_s3_endpoint`), once per process and endpoint, before anything
touches it: the endpoint must accept a connection and answer an HTTP request
within ``DASL_REMOTE_TIMEOUT_S`` seconds (default :data:`REMOTE_TIMEOUT_S`),
else the path is a :class:`RemotePathError` naming the endpoint. The same
number of seconds becomes tensorflow-io's S3 connect and request (idle)
timeouts, unless ``S3_CONNECT_TIMEOUT_MSEC`` / ``S3_REQUEST_TIMEOUT_MSEC`` are
set, so a connection lost later fails instead of hanging (after the AWS SDK's
retries). The endpoint is the one tensorflow-io's client uses:
``S3_ENDPOINT``, else AWS's for ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
(us-east-1 without either, the AWS SDK's default), ``s3.<region>.amazonaws.com:443``.
tensorflow-io 0.37 does not read AWS's ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``; without ``S3_ENDPOINT`` they are copied to it, so the
client goes where boto3 and the AWS CLI would. Other schemes are not checked.

tensorflow-io's S3 client aborts while the interpreter tears down ("pure
virtual method called", exit code 134; tensorflow/io#2039). The command-line
tools therefore end through :func:`run_main`, which leaves with ``os._exit``
once every output is flushed when an ``s3://`` path was used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob as glob_lib
import math
import os
import shutil
import sys
import tempfile
import urllib.parse
from typing import Callable, Iterator, List, MutableMapping, Optional, Tuple

from dasl_tf import errors

TENSORFLOW_IO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az")
OBJECT_STORE_SCHEMES = ("s3", "gs", "az")

# Seconds an object store's endpoint has to accept a connection and to answer; the
# environment variable TIMEOUT_ENV overrides it.
REMOTE_TIMEOUT_S = 10.0
TIMEOUT_ENV = "DASL_REMOTE_TIMEOUT_S"
# The S3 endpoint variables, first set first; tensorflow-io's client reads only the first.
S3_ENDPOINT_ENVS = ("S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
# tensorflow-io's S3 client timeouts, in milliseconds (read once, when the client is made).
S3_TIMEOUT_ENVS = ("S3_CONNECT_TIMEOUT_MSEC", "S3_REQUEST_TIMEOUT_MSEC")

_schemes_used = set()
_reachable = set()


class RemotePathError(errors.DaslError, ValueError):
  """A path's filesystem is not available in this environment."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
  """Where an object store's client connects.

  Attributes:
    host: host name or address.
    port: TCP port.
    tls: whether the client speaks HTTPS.
    source: where the endpoint came from, for messages ("S3_ENDPOINT=...").
  """
  host: str
  port: int
  tls: bool
  source: str


def remote_timeout_s(environ: Optional[MutableMapping[str, str]] = None) -> float:
  """Seconds an endpoint has to answer: ``DASL_REMOTE_TIMEOUT_S``, else :data:`REMOTE_TIMEOUT_S`.

  Raises:
    RemotePathError: the variable is not a positive number.
  """
  raw = (os.environ if environ is None else environ).get(TIMEOUT_ENV, "")
  if not raw.strip():
    return REMOTE_TIMEOUT_S
  try:
    seconds = float(raw)
  except ValueError:
    seconds = math.nan
  if not (math.isfinite(seconds) and seconds > 0):
    raise RemotePathError(f"{TIMEOUT_ENV}={raw!r}: must be a positive number of seconds "
                          f"(default {REMOTE_TIMEOUT_S:g})")
  return seconds


def configure_s3(environ: Optional[MutableMapping[str, str]] = None) -> Endpoint:
  """Sets tensorflow-io's S3 endpoint and timeouts in ``environ``; returns the endpoint.

  ``S3_ENDPOINT`` is set from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` when
  it is unset, and the timeouts (``S3_CONNECT_TIMEOUT_MSEC``,
  ``S3_REQUEST_TIMEOUT_MSEC``) from :func:`remote_timeout_s` when they are
  unset. Without any endpoint variable the endpoint is AWS's.

  Raises:
    RemotePathError: a malformed endpoint or ``DASL_REMOTE_TIMEOUT_S``.
  """
  environ = os.environ if environ is None else environ
  timeout_ms = str(max(1, round(remote_timeout_s(environ) * 1000)))
  for name in S3_TIMEOUT_ENVS:
    environ.setdefault(name, timeout_ms)
  name = next((name for name in S3_ENDPOINT_ENVS if environ.get(name, "").strip()), None)
  if name is None:
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Endpoint(f"s3.{region}.amazonaws.com", 443, True,
                    f"AWS's endpoint for region {region}, as none of "
                    f"{', '.join(S3_ENDPOINT_ENVS)} is set")
  url = environ[name].strip()
  environ["S3_ENDPOINT"] = url
  # Without a scheme the AWS SDK speaks HTTPS.
  parts = urllib.parse.urlsplit(url if "://" in url else "https://" + url)
  try:
    port = parts.port
  except ValueError:
    port = -1
  if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
    raise RemotePathError(f"{name}={url!r}: not an S3 endpoint (host:port or "
                          "http(s)://host:port)")
  tls = parts.scheme == "https"
  return Endpoint(parts.hostname, port or (443 if tls else 80), tls, f"from {name}={url}")


def check_s3_endpoint(path: str) -> None:
  """Checks, once per process and endpoint, that the S3 endpoint of ``path`` answers.

  Connects (and for HTTPS shakes hands, without checking the certificate: only
  reachability is asked here) and sends ``HEAD /``; any HTTP answer will do.
  Each step has :func:`remote_timeout_s` seconds. Sets tensorflow-io's
  settings first (:func:`configure_s3`).

  Raises:
    RemotePathError: the endpoint refuses, does not accept or does not answer
      in time, or cannot be resolved; the message names it and what to check.
  """
  # The network modules load only here: code that never touches s3:// (request building
  # in dasl_tf.serving.requests, for one) imports none of them.
  import http.client  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  import ssl  # pylint: disable=g-import-not-at-top

  endpoint = configure_s3()
  if endpoint in _reachable:
    return
  timeout = remote_timeout_s()
  connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
  waiting_for = "accept a connection"
  try:
    connection.sock = socket.create_connection((endpoint.host, endpoint.port), timeout)
    if endpoint.tls:
      waiting_for = "complete a TLS handshake after accepting the connection"
      context = ssl.create_default_context()
      context.check_hostname = False
      context.verify_mode = ssl.CERT_NONE
      connection.sock = context.wrap_socket(connection.sock, server_hostname=endpoint.host)
    waiting_for = "send an HTTP answer after accepting the connection"
    connection.request("HEAD", "/")
    connection.getresponse()
  except (OSError, http.client.HTTPException) as e:
    if isinstance(e, TimeoutError):
      reason = f"it did not {waiting_for} within {timeout:g} s"
    elif isinstance(e, http.client.HTTPException):
      reason = f"it does not answer in HTTP ({type(e).__name__}: {e})"
    else:
      reason = (e.strerror or str(e) or type(e).__name__).rstrip(".")
      reason = reason[0].lower() + reason[1:]
    raise RemotePathError(
        f"{path}: cannot reach the S3 endpoint {endpoint.host}:{endpoint.port} "
        f"({endpoint.source}): {reason}. Check that the object store is running and reachable "
        f"from here and that {S3_ENDPOINT_ENVS[0]} names it (host:port), or raise "
        f"{TIMEOUT_ENV} (now {timeout:g} s) if it is only slow to answer") from e
  finally:
    connection.close()
  _reachable.add(endpoint)


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

  @staticmethod
  def glob(pattern: str) -> List[str]:
    return sorted(glob_lib.glob(pattern))

  @staticmethod
  def copy(source: str, target: str, overwrite: bool = False) -> None:
    if not overwrite and os.path.exists(target):
      raise FileExistsError(f"{target} exists")
    shutil.copyfile(source, target)


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
      cannot be loaded here, or its S3 endpoint does not answer
      (:func:`check_s3_endpoint`).
  """
  path_scheme = scheme(path)
  if not path_scheme:
    return LocalFiles
  if path_scheme == "s3":
    check_s3_endpoint(path)
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
  return file_version(path)[0]


def file_version(path: str) -> Tuple[int, int]:
  """``(size in bytes, modification time in ns)`` of a local or remote file."""
  if not scheme(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
  stat = files_for(path).stat(path)
  return stat.length, stat.mtime_nsec


def glob(pattern: str) -> List[str]:
  """The files matching a local or remote glob pattern, sorted."""
  return sorted(files_for(pattern).glob(pattern))


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
