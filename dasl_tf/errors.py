"""The errors a user can act on, under one base: :class:`DaslError`.

Every exception the package raises on purpose about its input (a flag, a
config, a data file, a model directory, a remote path, a served model)
derives from :class:`DaslError`. The command-line entry points
(:func:`dasl_tf.pipelines.cli.run_command`) print it as one
``<command>: error: <message>`` line and exit with status 2; any other
exception is a bug and keeps its traceback.

The concrete classes live beside the code that raises them
(``ConfigError`` in :mod:`dasl_tf.config`, ``PrepareError`` in
:mod:`dasl_tf.prepare.config`, ...) and keep the built-in base they always
had (``ValueError`` or ``RuntimeError``), so ``except ValueError`` code goes
on working.
"""


class DaslError(Exception):
  """Bad input, configuration or environment, in a message that says what to fix."""


class DataError(DaslError, ValueError):
  """A dataset, schema, model or export (or a value in one) is malformed or inconsistent.

  The message names the file, record or field.
  """
