"""How the Beam driver runs its pipeline: the runner, a worker's bad-input error, the counters.

The runner. Beam's ``DirectRunner`` first tries the Prism runner, whose binary
it downloads from GitHub at run time, and falls back to its in-process
FnApiRunner when that fails; offline (as on most clusters) every run would
wait on the download first. So ``--beam_runner DirectRunner`` (the default)
runs the FnApiRunner directly, as the DirectRunner's fallback would: no
download, no network, and the DirectRunner's options (``--direct_num_workers``,
``--direct_running_mode``) still apply. Any other runner (``PrismRunner``,
``DataflowRunner``, ...) is Beam's own.

Errors. A :class:`PrepareError` raised in a worker reaches the launcher wrapped
(or re-raised with the step's name appended), after Beam logged it with its
traceback; :func:`run_pipeline` raises it as the local driver does, with the
same message, and keeps Beam's log of it out of the output.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, Optional

from dasl_tf.prepare.config import PrepareError

NAMESPACE = "dasl_prepare"
# Beam's names of the DirectRunner (it also accepts a name without "Runner", any case).
_DIRECT_RUNNER = "directrunner"
# The logger of Beam's DoFn runner, which logs a worker's exception before re-raising it.
_DOFN_RUNNER_LOGGER = "apache_beam.runners.common"
_STEP_SUFFIX = " [while running"


def pipeline_runner(options):
  """The runner for Beam pipeline ``options``: an FnApiRunner for the DirectRunner, else None.

  None lets ``beam.Pipeline`` create the runner that ``--runner`` names.
  """
  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  from apache_beam.runners.portability.portable_runner import JobServiceHandle
  # pylint: enable=g-import-not-at-top
  name = str(options.view_as(pipeline_options.StandardOptions).runner or "DirectRunner").lower()
  if _DIRECT_RUNNER not in (name, name + "runner"):
    return None
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


class _PrepareErrorLogFilter(logging.Filter):
  """Drops Beam's log record of a worker's :class:`PrepareError` (the launcher raises it)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], PrepareError))


@contextlib.contextmanager
def _without_prepare_error_logs() -> Iterator[None]:
  log_filter = _PrepareErrorLogFilter()
  logger = logging.getLogger(_DOFN_RUNNER_LOGGER)
  logger.addFilter(log_filter)
  try:
    yield
  finally:
    logger.removeFilter(log_filter)


def run_pipeline(pipeline):
  """Runs ``pipeline`` to its end and returns its result.

  Raises:
    PrepareError: a worker raised one (bad input); its message as the worker
      wrote it, without Beam's step name or traceback.
  """
  try:
    with _without_prepare_error_logs():
      result = pipeline.run()
      result.wait_until_finish()
  except Exception as e:  # pylint: disable=broad-except
    message = _prepare_error_in(e)
    if message is None:
      raise
    raise PrepareError(message) from None
  return result


def _prepare_error_in(error: BaseException) -> Optional[str]:
  """The message of a PrepareError that a runner re-raised (wrapped or annotated), if any."""
  seen = error
  while seen is not None:
    if isinstance(seen, PrepareError):
      return str(seen).split(_STEP_SUFFIX)[0]
    seen = seen.__cause__ or seen.__context__
  marker = f"{PrepareError.__name__}: "
  text = str(error)
  if marker in text:
    return text.split(marker, 1)[1].split("\n", 1)[0].split(_STEP_SUFFIX)[0]
  return None


def counters(result) -> Dict[str, int]:
  """The pipeline's counters of :data:`NAMESPACE`, by name (summed over steps)."""
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=g-import-not-at-top
  counts: Dict[str, int] = {}
  for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
    name = counter.key.metric.name
    counts[name] = counts.get(name, 0) + (counter.committed or counter.attempted or 0)
  return counts
