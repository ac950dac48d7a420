"""TFRecord files written without TensorFlow, so that ``dasl-prepare`` never imports it.

A TFRecord file is a sequence of records, each framed as::

  uint64 length              little-endian
  uint32 masked_crc32c(length bytes)
  byte   data[length]
  uint32 masked_crc32c(data)

where ``masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32)
of the CRC-32C (Castagnoli) of ``x``, all little-endian. A ``GZIP`` file is that
byte stream in one gzip member, which ``tf.data.TFRecordDataset(path,
compression_type="GZIP")`` reads. The uncompressed files are byte-identical to
what ``tf.io.TFRecordWriter`` writes.

CRC-32C comes from ``google_crc32c`` (its C implementation). Records are framed a
batch at a time and written with one ``write`` call per batch.
"""
from __future__ import annotations

import struct
import zlib
from typing import Dict, Iterable, Optional

import google_crc32c

from dasl_tf import filesystems

_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF
_PACK_LENGTH = struct.Struct("<Q").pack
_PACK_CRC = struct.Struct("<I").pack
# gzip container (header with mtime 0 and no file name, CRC-32 trailer) at zlib's
# default level 6, the level TensorFlow's GZIP writer uses.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_LEVEL = 6


def masked_crc32c(data: bytes) -> int:
  """The masked CRC-32C of ``data`` that TFRecord framing stores."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _UINT32


class TFRecordWriter:
  """Writes a TFRecord file, uncompressed or GZIP, without TensorFlow.

  Use as a context manager, or call :meth:`close` (the GZIP trailer is written
  on close)::

    with TFRecordWriter("part-00000.tfrecord.gz", compress=True) as writer:
      writer.write_all([record_1, record_2])

  Args:
    path: a local or remote (``scheme://``) file path; an existing file is replaced.
    compress: write a GZIP stream (for ``compression_type="GZIP"`` readers).
  """

  def __init__(self, path: str, compress: bool = False):
    self.path = path
    self._file = filesystems.open_file(path, "wb")
    self._compressor = (zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
                        if compress else None)
    # Framing headers by record length: lengths repeat, so most headers are reused.
    self._headers: Dict[int, bytes] = {}

  def _header(self, length: int) -> bytes:
    header = self._headers.get(length)
    if header is None:
      packed = _PACK_LENGTH(length)
      header = packed + _PACK_CRC(masked_crc32c(packed))
      self._headers[length] = header
    return header

  def frame(self, records: Iterable[bytes]) -> bytes:
    """The framed bytes of ``records``, in order (nothing is written)."""
    parts = []
    for record in records:
      parts += (self._header(len(record)), record, _PACK_CRC(masked_crc32c(record)))
    return b"".join(parts)

  def write_all(self, records: Iterable[bytes]) -> None:
    """Appends ``records`` (serialized bytes each) to the file, with one write call.

    Raises:
      ValueError: the writer is closed.
    """
    if self._file is None:
      raise ValueError(f"{self.path}: write to a closed TFRecordWriter")
    data = self.frame(records)
    if not data:
      return
    if self._compressor is not None:
      data = self._compressor.compress(data)
    self._file.write(data)

  def close(self) -> None:
    """Finishes the GZIP stream if any and closes the file; later calls do nothing."""
    if self._file is None:
      return
    try:
      if self._compressor is not None:
        self._file.write(self._compressor.flush())
    finally:
      self._file.close()
      self._file = None

  def __enter__(self) -> "TFRecordWriter":
    return self

  def __exit__(self, exc_type, exc_value, traceback) -> Optional[bool]:
    self.close()
    return None
